"""One head's evaluation section (the ``heads.HEAD`` object of the EvalReport JSON), computed
from plain arrays: logits, labels, tail split and — optionally — the reference's logits.

Pure: no files, no runtimes. :mod:`optim.golden_sets.evaluate` feeds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from optim.golden_sets.metrics import _none_if_nan, multiclass_metrics, multilabel_metrics, topk_correct, topk_set
from optim.golden_sets.stats import (
    BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, Interval, agreement_rate, mcnemar_exact_p, paired_bootstrap,
    weighted_accuracy, weighted_average_precision, weighted_class_accuracy, weighted_macro_f1,
    weighted_multilabel_f1, weighted_multilabel_macro_f1,
)
from optim.golden_sets.tail import TailSplit

_NULL = Interval(None, None, None)


def multiclass_head_report(labels: Sequence[str], logits: np.ndarray, y: np.ndarray, tail: TailSplit,
                           ref_logits: np.ndarray | None = None, *, resamples: int = BOOTSTRAP_RESAMPLES,
                           seed: int = BOOTSTRAP_SEED, ks: Sequence[int] | None = None) -> dict[str, Any]:
    """Evaluate one multiclass head.

    Args:
        labels: the K class names (model-card order).
        logits: N×K target scores for all N golden samples.
        y: N int true class index, −1 where the sample has no label for this head (left out
            and counted in ``n_missing_labels``).
        tail: head/tail split of the K classes.
        ref_logits: N×K reference (FP32) scores, or None (then ``delta`` is None).
        ks: top-k accuracies to report besides top-1: ``top2``, ``top5`` and ``top{k}`` for each
            k given (e.g. the ks a policy budgets); k is clipped to K (:func:`metrics.topk_set`).

    Metrics are computed over the labelled samples (``n_used``); the top-1 ``agreement`` with
    the reference over the same samples. Deltas are target − reference with 95 % paired
    bootstrap intervals (see :mod:`optim.golden_sets.stats`); ``per_class`` deltas are of the
    per-class top-1 accuracy (recall); a class is a significant drop when its whole interval
    is below 0. McNemar's exact test is on top-1 correctness.
    """
    y = np.asarray(y, dtype=int)
    used = y >= 0
    k = len(labels)
    yt = y[used]
    kset = topk_set(ks)
    m = multiclass_metrics(np.asarray(logits)[used], yt, tail.mask, kset)
    tail_labels = tail.tail_labels(labels)
    per_class = [
        {"label": lab, "support": int(m.support[c]), "precision": _none_if_nan(m.precision[c]),
         "recall": _none_if_nan(m.recall[c]), "f1": _none_if_nan(m.f1[c]),
         "is_tail": bool(tail.mask[c]) if tail.mask is not None else None}
        for c, lab in enumerate(labels)
    ]
    out: dict[str, Any] = {
        "kind": "multiclass", "n_used": int(used.sum()), "n_missing_labels": int((~used).sum()),
        "metrics": m.summary(), "reference_metrics": None,
        "tail_classes": tail_labels, "tail_source": tail.source,
        "per_class": per_class, "delta": None,
    }
    if ref_logits is None:
        return out
    r = multiclass_metrics(np.asarray(ref_logits)[used], yt, tail.mask, kset)
    out["reference_metrics"] = r.summary()
    n = len(yt)
    if n == 0:
        out["delta"] = {"top1": _NULL.to_dict(), **{f"top{kk}": _NULL.to_dict() for kk in kset},
                        "head_top1": _NULL.to_dict(), "tail_top1": _NULL.to_dict(),
                        "macro_f1": _NULL.to_dict(), "per_class": [], "agreement": None, "mcnemar_p": None,
                        "significant_drops": [], "n_used": 0}
        return out
    is_tail = tail.mask[yt] if tail.mask is not None else None
    stats = {
        "top1": (lambda w: weighted_accuracy(w, m.correct), lambda w: weighted_accuracy(w, r.correct)),
        "macro_f1": (lambda w: weighted_macro_f1(w, yt, m.pred, k), lambda w: weighted_macro_f1(w, yt, r.pred, k)),
        "per_class": (lambda w: weighted_class_accuracy(w, m.correct, yt, k), lambda w: weighted_class_accuracy(w, r.correct, yt, k)),
    }
    lt, lr = np.asarray(logits)[used], np.asarray(ref_logits)[used]
    for kk in kset:
        ct, cr = topk_correct(lt, yt, kk), topk_correct(lr, yt, kk)
        stats[f"top{kk}"] = (lambda w, c=ct: weighted_accuracy(w, c), lambda w, c=cr: weighted_accuracy(w, c))
    if is_tail is not None:
        stats["head_top1"] = (lambda w: weighted_accuracy(w, m.correct, ~is_tail), lambda w: weighted_accuracy(w, r.correct, ~is_tail))
        stats["tail_top1"] = (lambda w: weighted_accuracy(w, m.correct, is_tail), lambda w: weighted_accuracy(w, r.correct, is_tail))
    ivs = paired_bootstrap(stats, n, resamples=resamples, seed=seed)
    rows = []
    for c, lab in enumerate(labels):
        iv = ivs["per_class"][c]  # type: ignore[index]
        rows.append({"label": lab, "support": int(m.support[c]), **iv.to_dict(), "significant": iv.significant_drop,
                     "is_tail": bool(tail.mask[c]) if tail.mask is not None else None})
    out["delta"] = {
        "top1": ivs["top1"].to_dict(),  # type: ignore[union-attr]
        "head_top1": ivs.get("head_top1", _NULL).to_dict(),  # type: ignore[union-attr]
        "tail_top1": ivs.get("tail_top1", _NULL).to_dict(),  # type: ignore[union-attr]
        "macro_f1": ivs["macro_f1"].to_dict(),  # type: ignore[union-attr]
        **{f"top{kk}": ivs[f"top{kk}"].to_dict() for kk in kset},  # type: ignore[union-attr]
        "per_class": rows,
        "agreement": agreement_rate(m.pred, r.pred),
        "mcnemar_p": mcnemar_exact_p(r.correct, m.correct),
        "significant_drops": [row["label"] for row in rows if row["significant"]],
        "n_used": n,
    }
    return out


def multilabel_head_report(labels: Sequence[str], logits: np.ndarray, y: np.ndarray, thresholds: np.ndarray,
                           tail: TailSplit, ref_logits: np.ndarray | None = None, *,
                           resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Evaluate one multi-label head.

    Args:
        labels: the T tag names (model-card order).
        logits: N×T target logits; a tag is predicted when sigmoid(logit) ≥ its threshold.
        y: N×T float, 1 / 0 / NaN (missing — ignored for that tag, counted in ``n_ignored``).
        thresholds: T probability thresholds.
        tail: head/tail split of the tags (tail tags: few training positives).
        ref_logits: N×T reference logits, or None.

    ``n_used`` = samples with at least one known label; ``n_ignored`` = missing labels
    (sample × tag cells). ``agreement`` = fraction of the N samples whose whole predicted tag
    set is the same for target and reference.

    With a reference, ``delta`` holds (target − reference, fractions, 95 % paired bootstrap
    intervals over images, see :mod:`optim.golden_sets.stats`): ``macro_f1``,
    ``tail_macro_f1`` (macro-F1 over the tail tags), ``head_macro_f1``, ``macro_ap`` and
    ``per_tag``: one row per tag ``{"label", "support" (known positives), "n_known", "is_tail",
    "f1": {value, ci_low, ci_high}, "ap": {…}, "significant": bool}`` — so one tag collapsing
    does not hide in the average. ``significant`` is True when the whole F1 interval lies
    below 0; ``significant_drops`` lists those tags.
    """
    y = np.asarray(y, dtype=float)
    logits = np.asarray(logits)
    m = multilabel_metrics(logits, y, thresholds, tail.mask)
    per_tag = [
        {"label": lab, "support": int(m.support[j]), "precision": _none_if_nan(m.precision[j]),
         "recall": _none_if_nan(m.recall[j]), "f1": _none_if_nan(m.f1[j]), "ap": _none_if_nan(m.ap[j]),
         "threshold": float(thresholds[j]), "n_known": int(m.n_known[j]), "n_missing": int(m.n_missing[j]),
         "is_tail": bool(tail.mask[j]) if tail.mask is not None else None}
        for j, lab in enumerate(labels)
    ]
    out: dict[str, Any] = {
        "kind": "multilabel", "n_used": m.n_used, "n_ignored": m.n_ignored,
        "metrics": m.summary(), "reference_metrics": None,
        "tail_classes": tail.tail_labels(labels), "tail_source": tail.source,
        "per_tag": per_tag, "delta": None,
    }
    if ref_logits is None:
        return out
    ref_logits = np.asarray(ref_logits)
    r = multilabel_metrics(ref_logits, y, thresholds, tail.mask)
    out["reference_metrics"] = r.summary()
    n = len(y)
    if n == 0:
        out["delta"] = {"macro_f1": _NULL.to_dict(), "tail_macro_f1": _NULL.to_dict(), "head_macro_f1": _NULL.to_dict(),
                        "macro_ap": _NULL.to_dict(), "per_tag": [], "significant_drops": [], "agreement": None, "n_used": 0}
        return out

    def _ap(scores: np.ndarray):
        last: list = [None, None]  # the last weights seen and their AP: per_tag_ap and macro_ap share one pass

        def f(w: np.ndarray) -> np.ndarray:
            if last[0] is not w:
                last[0], last[1] = w, weighted_average_precision(w, scores, y)
            return last[1]
        return f

    ap_t, ap_r = _ap(logits), _ap(ref_logits)

    def _ap_mean(v: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(v)
            return np.where(ok.any(axis=1), np.where(ok, v, 0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1), np.nan)

    stats = {
        "macro_f1": (lambda w: weighted_multilabel_macro_f1(w, y, m.pred), lambda w: weighted_multilabel_macro_f1(w, y, r.pred)),
        "per_tag_f1": (lambda w: weighted_multilabel_f1(w, y, m.pred), lambda w: weighted_multilabel_f1(w, y, r.pred)),
        "per_tag_ap": (ap_t, ap_r),
        "macro_ap": (lambda w: _ap_mean(ap_t(w)), lambda w: _ap_mean(ap_r(w))),
    }
    if tail.mask is not None:
        for key, mask in (("tail_macro_f1", tail.mask), ("head_macro_f1", ~tail.mask)):
            ym = np.where(mask[None, :], y, np.nan)
            stats[key] = (lambda w, ym=ym: weighted_multilabel_macro_f1(w, ym, m.pred),
                          lambda w, ym=ym: weighted_multilabel_macro_f1(w, ym, r.pred))
    ivs = paired_bootstrap(stats, n, resamples=resamples, seed=seed)
    rows = []
    for j, lab in enumerate(labels):
        f1_iv, ap_iv = ivs["per_tag_f1"][j], ivs["per_tag_ap"][j]  # type: ignore[index]
        rows.append({"label": lab, "support": int(m.support[j]), "n_known": int(m.n_known[j]),
                     "is_tail": bool(tail.mask[j]) if tail.mask is not None else None,
                     "f1": f1_iv.to_dict(), "ap": ap_iv.to_dict(), "significant": f1_iv.significant_drop})
    out["delta"] = {
        "macro_f1": ivs["macro_f1"].to_dict(),  # type: ignore[union-attr]
        "tail_macro_f1": ivs.get("tail_macro_f1", _NULL).to_dict(),  # type: ignore[union-attr]
        "head_macro_f1": ivs.get("head_macro_f1", _NULL).to_dict(),  # type: ignore[union-attr]
        "macro_ap": ivs["macro_ap"].to_dict(),  # type: ignore[union-attr]
        "per_tag": rows,
        "significant_drops": [row["label"] for row in rows if row["significant"]],
        "agreement": agreement_rate(m.pred, r.pred),
        "n_used": n,
    }
    return out
