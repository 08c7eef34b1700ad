"""Accuracy metrics on plain arrays: no files, no models, no runtimes.

Everything here takes numpy arrays and returns floats (fractions in [0, 1]) or ``None`` when
a metric cannot be computed (never 0 in its place). Per-class precision/recall/F1/support
come from scikit-learn; softmax/sigmoid from scipy.

Conventions:

* multiclass scores are N×K float logits (or probabilities; only their order matters, except
  for ECE which needs probabilities — pass logits to :func:`softmax` first);
* multiclass labels ``y`` are N int class indices in ``[0, K)``;
* multi-label labels are N×T float arrays holding 1.0, 0.0 or NaN (label missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ECE_BINS = 15  # Guo et al., "On Calibration of Modern Neural Networks", ICML 2017 (M = 15 bins)
DEFAULT_THRESHOLD = 0.5
TOP_K = (2, 5)
"""The top-k accuracies every multiclass head reports (besides top-1); a policy's
``max_topk_drop_pts`` adds its own ks (:func:`topk_set`)."""
MAX_TOP_KS = 16
"""At most this many distinct ks per evaluation (a policy names a handful)."""


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def softmax(logits: np.ndarray) -> np.ndarray:
    """N×K logits → N×K probabilities (rows sum to 1), float64."""
    from scipy.special import softmax as _softmax

    return _softmax(np.asarray(logits, dtype=np.float64), axis=1)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, float64."""
    from scipy.special import expit

    return expit(np.asarray(logits, dtype=np.float64))


# ---- multiclass ---------------------------------------------------------------------------
def topk_correct(scores: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """N bool: is the true class among the ``k`` highest scores? ``k`` is clipped to K.

    Ties are broken like a stable descending sort (lower class index first): the true class's
    rank is the number of classes scoring higher plus the number of lower-index classes
    scoring the same. O(N·K), no sort.
    """
    scores = np.asarray(scores)
    y = np.asarray(y, dtype=int)
    k = max(1, min(int(k), scores.shape[1]))
    if len(y) == 0:
        return np.zeros(0, dtype=bool)
    true = scores[np.arange(len(y)), y][:, None]
    lower = np.arange(scores.shape[1])[None, :] < y[:, None]
    rank = (scores > true).sum(axis=1) + ((scores == true) & lower).sum(axis=1)
    return rank < k


def topk_set(extra: Sequence[int] | None = None) -> tuple[int, ...]:
    """The ks to report: :data:`TOP_K` plus ``extra`` (e.g. the ks a policy budgets), sorted,
    without 1 (top-1 is always reported on its own). The ks are kept as asked; each metric
    clips its k to the head's number of classes K (top-k with k ≥ K is 1.0).

    Raises ``ValueError`` for a k that is not an int ≥ 1 (bools refused) or for more than
    :data:`MAX_TOP_KS` distinct ks.
    """
    ks = set(TOP_K)
    for k in extra or ():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"top-k: k must be an integer ≥ 1, got {k!r}")
        ks.add(int(k))
    ks.discard(1)
    if len(ks) > MAX_TOP_KS:
        raise ValueError(f"top-k: at most {MAX_TOP_KS} distinct ks, got {len(ks)}")
    return tuple(sorted(ks))


def topk_accuracy(scores: np.ndarray, y: np.ndarray, k: int) -> float | None:
    """Fraction of samples whose true class is among the top ``min(k, K)`` scores; None if N = 0."""
    if len(y) == 0:
        return None
    return float(topk_correct(scores, y, k).mean())


def per_class_prf(y: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 (float, NaN where undefined) and support (int), each K long.

    scikit-learn's ``precision_recall_fscore_support`` with ``zero_division=NaN``: precision is
    NaN for a class never predicted, recall NaN for a class with no sample, F1 = 2TP/(2TP+FP+FN)
    and NaN only when that denominator is 0.
    """
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.arange(num_classes)
    if len(y) == 0:
        nan = np.full(num_classes, np.nan)
        return nan, nan.copy(), nan.copy(), np.zeros(num_classes, dtype=int)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=np.nan)
    return p.astype(float), r.astype(float), f.astype(float), np.asarray(s, dtype=int)


def macro_f1(y: np.ndarray, pred: np.ndarray, num_classes: int, classes: np.ndarray | None = None) -> float | None:
    """Unweighted mean of per-class F1 over the classes that have at least one sample
    (support > 0), optionally restricted to the bool mask ``classes`` (K). A class with samples
    but never predicted counts with F1 = 0. None if no class qualifies.

    (scikit-learn's default ``average="macro"`` averages over classes seen in ``y`` or in the
    predictions; a class that is only predicted has no golden sample to be judged on, so it is
    left out here.)
    """
    _, _, f, s = per_class_prf(y, pred, num_classes)
    keep = s > 0
    if classes is not None:
        keep &= np.asarray(classes, dtype=bool)
    if not keep.any():
        return None
    return float(np.mean(f[keep]))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """Expected calibration error (Guo et al., ICML 2017, eq. 3):
    ``ECE = Σ_m |B_m|/N · |acc(B_m) − conf(B_m)|`` over ``n_bins`` equal-width bins
    ``B_m = ((m−1)/M, m/M]`` of the top-1 confidence (a confidence of exactly 0 goes to the
    first bin). ``confidence``: N top-1 probabilities; ``correct``: N bool. None if N = 0.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    n = len(confidence)
    if n == 0:
        return None
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)
    ece = 0.0
    for m in range(n_bins):
        sel = bins == m
        if sel.any():
            ece += sel.sum() / n * abs(correct[sel].mean() - confidence[sel].mean())
    return float(ece)


def masked_accuracy(correct: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean of ``correct`` over samples where ``mask`` is True; None if none are."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    return float(np.asarray(correct, dtype=float)[mask].mean())


@dataclass
class MulticlassMetrics:
    """Metrics of one multiclass head. Fractions; None where not computable.

    ``head_top1``/``tail_top1`` are top-1 over the samples whose true class is a head/tail
    class (sample-weighted); None when there are no such samples or no tail definition.
    ``topk`` maps every reported k (:func:`topk_set`, ≥ 2) to its top-k accuracy; ``top2`` and
    ``top5`` are ``topk[2]`` and ``topk[5]``.
    """

    top1: float | None
    top2: float | None
    top5: float | None
    macro_f1: float | None
    ece: float | None
    head_top1: float | None
    tail_top1: float | None
    precision: np.ndarray  # K, NaN where undefined
    recall: np.ndarray  # K (= per-class top-1 accuracy)
    f1: np.ndarray  # K
    support: np.ndarray  # K int
    pred: np.ndarray  # N int, argmax
    correct: np.ndarray  # N bool, top-1
    topk: dict[int, float | None] = field(default_factory=dict)

    def summary(self) -> dict[str, float | None]:
        """``{"top1", "top2", "top5", "top{k}" for every other k, "macro_f1", "ece", "head_top1", "tail_top1"}``."""
        out: dict[str, float | None] = {"top1": self.top1, "top2": self.top2, "top5": self.top5}
        out.update({f"top{k}": v for k, v in sorted(self.topk.items())})
        out.update({"macro_f1": self.macro_f1, "ece": self.ece, "head_top1": self.head_top1, "tail_top1": self.tail_top1})
        return out


def multiclass_metrics(logits: np.ndarray, y: np.ndarray, tail_mask: np.ndarray | None = None,
                       ks: Sequence[int] | None = None) -> MulticlassMetrics:
    """All multiclass metrics of one head.

    Args:
        logits: N×K float scores (softmax is applied for ECE).
        y: N int true class indices in ``[0, K)`` (samples without a label already removed).
        tail_mask: K bool, True for tail classes; None when head/tail is undefined.
        ks: extra top-k accuracies to compute (on top of :data:`TOP_K`; see :func:`topk_set`).
    """
    logits = np.asarray(logits)
    y = np.asarray(y, dtype=int)
    k = logits.shape[1]
    pred = np.argmax(logits, axis=1) if len(y) else np.zeros(0, dtype=int)
    correct = pred == y
    p, r, f, s = per_class_prf(y, pred, k)
    ece = None
    if len(y):
        prob = softmax(logits)
        ece = expected_calibration_error(prob.max(axis=1), correct)
    head_top1 = tail_top1 = None
    if tail_mask is not None:
        tail_mask = np.asarray(tail_mask, dtype=bool)
        is_tail_sample = tail_mask[y] if len(y) else np.zeros(0, dtype=bool)
        head_top1 = masked_accuracy(correct, ~is_tail_sample)
        tail_top1 = masked_accuracy(correct, is_tail_sample)
    topk = {kk: topk_accuracy(logits, y, kk) for kk in topk_set(ks)}
    return MulticlassMetrics(
        top1=masked_accuracy(correct, np.ones(len(y), dtype=bool)),
        top2=topk[2],
        top5=topk[5],
        macro_f1=macro_f1(y, pred, k),
        ece=ece,
        head_top1=head_top1,
        tail_top1=tail_top1,
        precision=p, recall=r, f1=f, support=s, pred=pred, correct=correct, topk=topk,
    )


# ---- multi-label --------------------------------------------------------------------------
def thresholds_for(labels: Sequence[str], overrides: dict[str, float] | None, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-tag probability thresholds (T floats): ``default`` unless ``overrides[tag]`` is set.

    Raises ``ValueError`` for an override naming an unknown tag or outside (0, 1).
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(labels))
    if unknown:
        raise ValueError(f"thresholds for unknown tags {unknown}; tags are {list(labels)}")
    out = np.array([float(overrides.get(t, default)) for t in labels])
    if ((out <= 0) | (out >= 1)).any():
        raise ValueError(f"thresholds must lie strictly between 0 and 1, got {dict(zip(labels, out.tolist()))}")
    return out


def average_precision(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-tag average precision (area under the precision-recall curve, scikit-learn's
    ``average_precision_score``: ``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct score
    thresholds, no interpolation) → T floats, NaN for a tag with no known positive label.

    Args:
        scores: N×T float scores (logits or probabilities: only their order matters; pass
            logits, probabilities near 1 may tie in float64).
        y: N×T float, 1.0 / 0.0 / NaN (missing: that sample is left out for that tag only).

    Unlike F1, AP needs no threshold: it says whether the tag's scores still rank the positives
    first, whatever threshold is set later.
    """
    from sklearn.metrics import average_precision_score

    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=float)
    out = np.full(y.shape[1], np.nan)
    for j in range(y.shape[1]):
        m = ~np.isnan(y[:, j])
        yj = y[m, j]
        if (yj == 1).any():
            out[j] = average_precision_score(yj.astype(int), scores[m, j])
    return out


@dataclass
class MultilabelMetrics:
    """Metrics of one multi-label head. Per-tag arrays are T long, NaN where undefined.

    ``macro_f1`` averages the defined per-tag F1; ``head_macro_f1`` / ``tail_macro_f1`` do so
    over head / tail tags (tail: fewer than ``tail_max_count`` training positives, see
    :mod:`optim.golden_sets.tail`); ``ap`` is the per-tag average precision
    (:func:`average_precision`) and ``macro_ap`` its mean over tags where it is defined.
    """

    macro_f1: float | None
    head_macro_f1: float | None
    tail_macro_f1: float | None
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # T int: known positive labels
    n_known: np.ndarray  # T int: known labels (0 or 1)
    n_missing: np.ndarray  # T int: missing labels
    n_used: int  # samples with at least one known label
    n_ignored: int  # missing (sample, tag) labels, ignored
    pred: np.ndarray  # N×T bool
    ap: np.ndarray = field(default_factory=lambda: np.zeros(0))  # T, NaN where undefined
    macro_ap: float | None = None

    def summary(self) -> dict[str, float | None]:
        return {"macro_f1": self.macro_f1, "head_macro_f1": self.head_macro_f1, "tail_macro_f1": self.tail_macro_f1,
                "macro_ap": self.macro_ap}


def multilabel_metrics(logits: np.ndarray, y: np.ndarray, thresholds: np.ndarray, tail_mask: np.ndarray | None = None) -> MultilabelMetrics:
    """Per-tag precision/recall/F1 at a probability threshold, ignoring missing labels.

    Args:
        logits: N×T float logits (sigmoid is applied); a tag is predicted when
            ``sigmoid(logit) >= threshold``.
        y: N×T float, 1.0 / 0.0 / NaN (missing: that sample is left out for that tag only).
        thresholds: T floats in (0, 1).
        tail_mask: T bool (tail tags) or None.

    Macro-F1 averages per-tag F1 over tags whose F1 is defined (at least one known positive
    label or one positive prediction among the known labels); None if no tag qualifies.
    Per-tag AP is computed on the logits (:func:`average_precision`).
    """
    from sklearn.metrics import precision_recall_fscore_support

    y = np.asarray(y, dtype=float)
    pred = sigmoid(logits) >= np.asarray(thresholds)[None, :]
    known = ~np.isnan(y)
    t = y.shape[1]
    p, r, f = (np.full(t, np.nan) for _ in range(3))
    for j in range(t):
        m = known[:, j]
        if m.any():
            pj, rj, fj, _ = precision_recall_fscore_support(
                y[m, j].astype(int), pred[m, j].astype(int), labels=[0, 1], pos_label=1, average="binary", zero_division=np.nan
            )
            p[j], r[j], f[j] = pj, rj, fj

    def _macro(mask: np.ndarray) -> float | None:
        vals = f[mask & np.isfinite(f)]
        return float(vals.mean()) if len(vals) else None

    all_tags = np.ones(t, dtype=bool)
    ap = average_precision(logits, y)
    head_f1 = tail_f1 = None
    if tail_mask is not None:
        tail_mask = np.asarray(tail_mask, dtype=bool)
        head_f1, tail_f1 = _macro(~tail_mask), _macro(tail_mask)
    return MultilabelMetrics(
        macro_f1=_macro(all_tags), head_macro_f1=head_f1, tail_macro_f1=tail_f1,
        precision=p, recall=r, f1=f,
        support=np.nansum(np.where(known, y, 0), axis=0).astype(int),
        n_known=known.sum(axis=0), n_missing=(~known).sum(axis=0),
        n_used=int(known.any(axis=1).sum()), n_ignored=int((~known).sum()), pred=pred,
        ap=ap, macro_ap=float(np.mean(ap[np.isfinite(ap)])) if np.isfinite(ap).any() else None,
    )


__all__ = [
    "ECE_BINS", "DEFAULT_THRESHOLD", "TOP_K", "MAX_TOP_KS", "topk_set", "average_precision", "softmax", "sigmoid", "topk_correct", "topk_accuracy",
    "per_class_prf", "macro_f1", "expected_calibration_error", "masked_accuracy", "MulticlassMetrics",
    "multiclass_metrics", "thresholds_for", "MultilabelMetrics", "multilabel_metrics", "_none_if_nan",
]
