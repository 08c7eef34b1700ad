"""The release gate: policy file (:mod:`.policy`), pure verdicts (:mod:`.checks`),
``optim verify`` (:mod:`.verify`), reports (:mod:`.reports`) and ``optim publish`` (:mod:`.publish`)."""
