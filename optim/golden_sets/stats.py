"""Statistics for comparing a target (e.g. an INT8 artifact) with its FP32 reference on the
same golden set: paired bootstrap intervals for metric deltas, the exact McNemar test, and
the top-1 agreement rate. Pure numpy/scipy on plain arrays.

Interval method: **paired percentile bootstrap** (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13). Each resample draws N images with replacement (the same images
for target and reference — that is what "paired" means); the metric delta
``target − reference`` is recomputed on it; the 95 % interval is the 2.5th and 97.5th
percentile of :data:`BOOTSTRAP_RESAMPLES` = 2000 such deltas, drawn with a seeded
``numpy.random.Generator`` (seed 0 by default) so that reports are reproducible. A resample is
represented by its multiplicity vector (how often each image was drawn: multinomial with N
trials and equal probabilities, drawn as N uniform indices and counted), so all metrics are weighted sums and every metric of a
report is computed on the same resamples.

Identical predictions give a delta of exactly 0 with a zero-width interval. Resamples in which
a metric is undefined (e.g. a class not drawn at all) are left out of that metric's
percentiles; if fewer than half of them remain, the interval is None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
_CHUNK_CELLS = 4_000_000  # resamples × N per chunk (bounded memory: ~32 MB of float64)


@dataclass(frozen=True)
class Interval:
    """A delta (target − reference, fraction) and its 95 % paired bootstrap interval."""

    value: float | None
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}

    @property
    def significant_drop(self) -> bool:
        """True when the whole interval lies below 0 (the drop is not noise at 95 %)."""
        return self.ci_high is not None and self.ci_high < 0


def resample_weights(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Iterator[np.ndarray]:
    """Yield chunks of bootstrap multiplicity vectors, float64 B×N, B summed over chunks =
    ``resamples``; row b says how many times each of the N images is in resample b (N draws
    with replacement, ``Generator.integers``, counted with ``bincount``)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CHUNK_CELLS // max(n, 1)))
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


# ---- metrics as weighted sums: f(W: B×N) → B (or B×K) values, NaN where undefined ----------
def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_accuracy(w: np.ndarray, correct: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Accuracy of ``correct`` (N bool) over ``mask`` (N bool) under weights ``w`` (B×N) → B."""
    m = np.ones(len(correct)) if mask is None else np.asarray(mask, dtype=float)
    return _ratio(w @ (np.asarray(correct, dtype=float) * m), w @ m)


def _onehot_sums(w: np.ndarray, idx: np.ndarray, num_classes: int, values: np.ndarray | None = None) -> np.ndarray:
    """``w @ onehot(idx) * values`` → B×K without building the dense N×K one-hot matrix
    (a sparse N×K matrix: O(B·N) instead of O(B·N·K), which matters for 1,000+ classes)."""
    import scipy.sparse as sp

    n = len(idx)
    data = np.ones(n) if values is None else np.asarray(values, dtype=float)
    onehot = sp.csr_array((data, (np.arange(n), np.asarray(idx, dtype=int))), shape=(n, num_classes))
    return np.asarray((onehot.T @ w.T).T)


def weighted_class_accuracy(w: np.ndarray, correct: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class top-1 accuracy (= recall) under weights → B×K (NaN for a class not drawn)."""
    return _ratio(_onehot_sums(w, y, num_classes, np.asarray(correct, dtype=float)), _onehot_sums(w, y, num_classes))


def weighted_macro_f1(w: np.ndarray, y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Multiclass macro-F1 under weights → B: per-class F1 = 2TP/(support + predicted), mean over
    classes with weighted support > 0 (the definition of :func:`metrics.macro_f1`)."""
    y = np.asarray(y, dtype=int)
    pred = np.asarray(pred, dtype=int)
    tp = _onehot_sums(w, y, num_classes, (y == pred).astype(float))
    support = _onehot_sums(w, y, num_classes)
    f1 = _ratio(2 * tp, support + _onehot_sums(w, pred, num_classes))
    f1 = np.where(support > 0, f1, np.nan)
    with _quiet_nanmean():
        return np.nanmean(f1, axis=1)


def weighted_multilabel_f1(w: np.ndarray, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-tag F1 under weights → B×T; ``y`` N×T with NaN = missing (ignored), ``pred`` N×T
    bool. F1 = 2TP/(2TP+FP+FN), NaN when 0/0 (the definition of
    :func:`metrics.multilabel_metrics`)."""
    y = np.asarray(y, dtype=float)
    known = ~np.isnan(y)
    yk = np.where(known, y, 0.0)
    p = np.asarray(pred, dtype=float) * known
    tp = w @ (yk * p)
    fp = w @ ((1 - yk) * p * known)
    fn = w @ (yk * (1 - p) * known)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def weighted_multilabel_macro_f1(w: np.ndarray, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Multi-label macro-F1 under weights → B; ``y`` N×T with NaN = missing (ignored),
    ``pred`` N×T bool. Mean of :func:`weighted_multilabel_f1` over the tags where it is defined."""
    f1 = weighted_multilabel_f1(w, y, pred)
    with _quiet_nanmean():
        return np.nanmean(f1, axis=1)


def weighted_average_precision(w: np.ndarray, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-tag average precision under weights → B×T (NaN where a resample holds no known
    positive of the tag).

    The same quantity as :func:`metrics.average_precision` (scikit-learn's
    ``average_precision_score`` with ``sample_weight`` = the multiplicities): samples sorted by
    score, descending, once per tag; at each distinct score the weighted cumulative TP and FP
    give precision P and recall R; ``AP = Σ (R_i − R_{i−1}) P_i``. O(B·N) per tag, no re-sort
    per resample. ``scores`` N×T float; ``y`` N×T float with NaN = missing (ignored).
    """
    w = np.asarray(w, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=float)
    out = np.full((len(w), y.shape[1]), np.nan)
    for j in range(y.shape[1]):
        m = np.flatnonzero(~np.isnan(y[:, j]))
        if len(m) == 0:
            continue
        order = m[np.argsort(-scores[m, j], kind="stable")]
        s, yy = scores[order, j], y[order, j]
        ends = np.append(np.flatnonzero(np.diff(s) != 0), len(s) - 1)  # last index of each distinct score
        wj = w[:, order]
        tp = np.cumsum(wj * yy, axis=1)[:, ends]
        fp = np.cumsum(wj * (1 - yy), axis=1)[:, ends]
        total = tp[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
            recall = tp / total
        d_recall = np.diff(recall, axis=1, prepend=0.0)
        ap = np.where(d_recall > 0, d_recall * np.nan_to_num(precision), 0.0).sum(axis=1)
        out[:, j] = np.where(total[:, 0] > 0, ap, np.nan)
    return out


class _quiet_nanmean:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


# ---- paired bootstrap ---------------------------------------------------------------------
def paired_bootstrap(
    stats: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]],
    n: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, list[Interval] | Interval]:
    """Deltas ``target − reference`` with paired percentile bootstrap intervals.

    Args:
        stats: name → (target_fn, reference_fn); each fn maps weights B×N to B values (scalar
            metric) or B×K values (one per class). The point value uses all weights = 1.
        n: number of samples N (> 0).

    Returns name → :class:`Interval` (scalar metrics) or list of K Intervals.
    """
    ones = np.ones((1, n))
    point = {k: np.atleast_1d(np.squeeze(tf(ones) - rf(ones), axis=0)) for k, (tf, rf) in stats.items()}
    scalar = {k: np.ndim(tf(ones)) == 1 for k, (tf, _) in stats.items()}
    draws: dict[str, list[np.ndarray]] = {k: [] for k in stats}
    for w in resample_weights(n, resamples, seed):
        for k, (tf, rf) in stats.items():
            d = tf(w) - rf(w)
            draws[k].append(d.reshape(len(w), -1))
    alpha = (1 - confidence) / 2
    out: dict[str, list[Interval] | Interval] = {}
    for k in stats:
        d = np.concatenate(draws[k])  # resamples × K
        finite = np.isfinite(d)
        enough = finite.sum(axis=0) >= resamples / 2
        with _quiet_nanmean():
            lo, hi = np.nanquantile(np.where(finite, d, np.nan), [alpha, 1 - alpha], axis=0) if enough.any() else (d[0] * np.nan,) * 2
        ivs = []
        for j in range(d.shape[1]):
            v = float(point[k][j]) if np.isfinite(point[k][j]) else None
            if v is None or not enough[j]:
                ivs.append(Interval(v, None, None))
            else:
                ivs.append(Interval(v, float(lo[j]), float(hi[j])))
        out[k] = ivs[0] if scalar[k] else ivs
    return out


def mcnemar_exact_p(reference_correct: np.ndarray, target_correct: np.ndarray) -> float:
    """Exact (binomial) McNemar test of equal top-1 accuracy on paired samples
    (McNemar 1947; exact form: two-sided binomial test of the discordant pairs, b successes out
    of b + c at p = 0.5, via ``scipy.stats.binomtest``). b = reference right & target wrong,
    c = reference wrong & target right. Returns 1.0 when there are no discordant pairs."""
    from scipy.stats import binomtest

    r = np.asarray(reference_correct, dtype=bool)
    t = np.asarray(target_correct, dtype=bool)
    b = int((r & ~t).sum())
    c = int((~r & t).sum())
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def agreement_rate(pred_a: np.ndarray, pred_b: np.ndarray) -> float | None:
    """Fraction of samples on which two prediction arrays agree (rows compared whole for N×T
    multi-label predictions). None if N = 0."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if len(a) == 0:
        return None
    same = a == b
    if same.ndim > 1:
        same = same.all(axis=tuple(range(1, same.ndim)))
    return float(same.mean())
