"""Head and tail classes: which classes are rare in *training*.

A class (or tag) is a **tail class** when it had fewer than ``tail_max_count`` training images
(default 50, the threshold of the "long-tail tags (< 50 training images)" brief); the others
are **head classes**. An explicit list of tail classes overrides the counts. Without either,
head/tail metrics are not computed (None), and a warning says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from optim.errors import InputError

DEFAULT_TAIL_MAX_COUNT = 50


@dataclass(frozen=True)
class TailSplit:
    """``mask``: K bool in label order (True = tail), or None when undefined; ``source`` is
    ``"explicit"``, ``"train_counts"`` or ``"none"``."""

    mask: np.ndarray | None
    source: str
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def tail_labels(self, labels: Sequence[str]) -> list[str]:
        return [] if self.mask is None else [lab for lab, t in zip(labels, self.mask) if t]


def split_head_tail(
    head: str,
    labels: Sequence[str],
    train_counts: dict[str, int] | None = None,
    tail_max_count: int = DEFAULT_TAIL_MAX_COUNT,
    explicit: Sequence[str] | None = None,
) -> TailSplit:
    """Decide tail classes for one head.

    Args:
        head: head name (for messages).
        labels: the head's K labels (model-card order).
        train_counts: training images per label; a label absent from it counts as 0 training
            images (tail), with a warning naming how many.
        tail_max_count: tail iff training count < this (must be ≥ 1).
        explicit: tail labels given by the user; overrides ``train_counts``.

    Raises :class:`InputError` for explicit tail labels not among ``labels`` or a bad threshold.
    """
    labels = list(labels)
    if explicit is not None:
        unknown = sorted(set(explicit) - set(labels))
        if unknown:
            raise InputError(f"tail classes for head {head!r}: {unknown} are not labels of the model card ({labels[:10]}{' …' if len(labels) > 10 else ''})")
        tail = set(explicit)
        return TailSplit(np.array([lab in tail for lab in labels]), "explicit")
    if train_counts is None:
        return TailSplit(None, "none", (f"head {head!r}: no training class counts and no explicit tail list; head/tail metrics are not computed",))
    if tail_max_count < 1:
        raise InputError(f"tail_max_count must be ≥ 1, got {tail_max_count}")
    warnings = []
    absent = [lab for lab in labels if lab not in train_counts]
    if absent:
        warnings.append(f"head {head!r}: {len(absent)} label(s) have no training count and are treated as tail (0 training images): {absent[:10]}")
    extra = sorted(set(train_counts) - set(labels))
    if extra:
        warnings.append(f"head {head!r}: training counts name {len(extra)} label(s) the model card does not have, ignored: {extra[:10]}")
    mask = np.array([train_counts.get(lab, 0) < tail_max_count for lab in labels])
    return TailSplit(mask, "train_counts", tuple(warnings))
