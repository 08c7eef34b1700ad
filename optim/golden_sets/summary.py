"""What a golden set holds: per-head class histogram, tail list, images per class, warnings.

Used by ``optim golden inspect``. Works without a model card: the labels are those in the
manifest and in the training counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optim.golden_sets.golden_set import GoldenSet
from optim.golden_sets.tail import DEFAULT_TAIL_MAX_COUNT, split_head_tail

FEW_IMAGES = 10  # below this many golden images a class's interval is wide; inspect warns


def summarize(gs: GoldenSet, tail_max_count: int = DEFAULT_TAIL_MAX_COUNT, verify: bool = True) -> dict[str, Any]:
    """A JSON-ready summary of ``gs``: name, version, sample count, hash status and per head
    the classes with golden images, training count and tail flag, plus warnings."""
    out: dict[str, Any] = {"path": str(gs.root), "name": gs.name, "version": gs.version, "created": gs.created,
                           "n_samples": len(gs), "sha256": gs.recorded_sha256, "heads": {}, "warnings": []}
    if verify:
        v = gs.verify()
        out["verified"] = v.ok
        out["actual_sha256"] = v.actual_sha256
        if not v.ok:
            out["warnings"].append(v.describe())
    counts_all = gs.train_counts or {}
    for name, h in gs.heads.items():
        counts = counts_all.get(name)
        warnings: list[str] = []
        if h.kind == "multiclass":
            vals = [v for v in h.values if v is not None]  # type: ignore[union-attr]
            labels = sorted(set(h.labels) | set(counts or {}))
            n_img = {lab: 0 for lab in labels}
            for v in vals:
                n_img[v] += 1
            missing = len(h.values) - len(vals)  # type: ignore[arg-type]
            if missing:
                warnings.append(f"{missing} sample(s) have no {name!r} label and are left out of this head")
        else:
            arr = np.asarray(h.values)
            labels = list(h.labels) + sorted(set(counts or {}) - set(h.labels))
            pos = {t: int(np.nansum(arr[:, j])) for j, t in enumerate(h.labels)}
            n_img = {lab: pos.get(lab, 0) for lab in labels}
            if h.n_missing:
                warnings.append(f"{h.n_missing} of {arr.size} labels ({h.n_missing / arr.size:.1%}) are missing and will be ignored")
        explicit = (gs.tail_classes or {}).get(name)
        split = split_head_tail(name, labels, counts, tail_max_count, explicit)
        warnings += list(split.warnings)
        tail = set(split.tail_labels(labels))
        zero = [lab for lab in labels if n_img[lab] == 0]
        if zero:
            warnings.append(f"{len(zero)} class(es) have no golden image and cannot be evaluated: {zero[:10]}")
        few = [lab for lab in labels if 0 < n_img[lab] < FEW_IMAGES]
        if few:
            warnings.append(f"{len(few)} class(es) have fewer than {FEW_IMAGES} golden images; their intervals will be wide: {few[:10]}")
        out["heads"][name] = {
            "kind": h.kind,
            "n_labelled": (len(h.values) - h.n_missing) if h.kind == "multiclass" else int((~np.isnan(np.asarray(h.values))).any(axis=1).sum()),  # type: ignore[arg-type]
            "n_missing": h.n_missing,
            "tail_source": split.source,
            "tail_classes": sorted(tail),
            "classes": [{"label": lab, "images": n_img[lab], "train_count": (counts or {}).get(lab), "is_tail": lab in tail}
                        for lab in labels],
            "warnings": warnings,
        }
        out["warnings"] += warnings
    return out
