"""Latency statistics: pure functions on arrays of per-iteration times (no I/O, no devices).

Conventions used everywhere in optim's benchmarks:

* latencies are milliseconds (ms), one value per timed iteration; warm-up iterations are
  dropped by the caller (or by :func:`drop_warmup`) before any statistic is computed;
* percentiles use ``numpy.percentile(..., method="linear")``, i.e. Hyndman & Fan (1996)
  definition 7, the default of numpy, R and Excel's PERCENTILE.INC (:data:`PERCENTILE_METHOD`);
* ``std`` is the population standard deviation (ddof = 0), the same definition LiteRT's
  ``benchmark_model`` prints, so host and device figures are comparable;
* the 95 % interval on p95 is a percentile bootstrap (Efron & Tibshirani 1993, ch. 13) with
  :func:`scipy.stats.bootstrap`, seeded. It treats iterations as independent draws; real
  iterations are mildly autocorrelated, so the interval is, if anything, too narrow — the
  spread between trials (:func:`trial_spread_pct`) is the more honest noise figure;
* when a tool reports only aggregates, the statistics it does not report stay ``None`` and are
  named in ``unavailable``. Nothing is ever estimated from a mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optim.errors import InputError
from optim.runtimes.device_tool import AggregateTrial

PERCENTILE_METHOD = "numpy.percentile method='linear' (Hyndman & Fan type 7)"
STAT_NAMES = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max")
#: Default threshold above which trials are said to drift apart (percent of the median trial
#: p95). A convention, not a law: a 10 % p95 swing between identical trials is as large as the
#: margins latency budgets are usually set with, so figures from such a run cannot decide a
#: gate. benchmarks/bench_noise.py measures what a given host actually resolves.
DEFAULT_DRIFT_PCT = 10.0


@dataclass(frozen=True)
class LatencyStats:
    """Summary statistics in ms; ``None`` where the source did not provide the statistic."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if getattr(self, k) is None else float(getattr(self, k))) for k in STAT_NAMES}

    @property
    def unavailable(self) -> list[str]:
        """Names of the statistics that are ``None``, in :data:`STAT_NAMES` order."""
        return [k for k in STAT_NAMES if getattr(self, k) is None]


def _as_latencies(values: Sequence[float] | np.ndarray, what: str = "latencies") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InputError(f"{what}: no timed iterations to summarise (runs must be ≥ 1)")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what}: contains NaN or infinite values")
    if np.any(arr < 0):
        raise InputError(f"{what}: contains negative durations")
    return arr


def drop_warmup(latencies_ms: Sequence[float] | np.ndarray, warmup: int) -> np.ndarray:
    """Drop the first ``warmup`` iterations. Raises :class:`InputError` if none would remain."""
    arr = np.asarray(latencies_ms, dtype=np.float64).ravel()
    if warmup < 0:
        raise InputError(f"warmup must be ≥ 0, got {warmup}")
    if arr.size <= warmup:
        raise InputError(f"only {arr.size} iterations recorded, all inside the {warmup} warm-up iterations")
    return arr[warmup:]


def summarize(latencies_ms: Sequence[float] | np.ndarray) -> LatencyStats:
    """Per-iteration latencies (ms, warm-up already dropped) → :class:`LatencyStats`.

    Percentiles: :data:`PERCENTILE_METHOD`; std: population (ddof = 0).
    Raises :class:`InputError` on an empty array or non-finite/negative values.
    """
    x = _as_latencies(latencies_ms)
    p50, p90, p95, p99 = np.percentile(x, [50, 90, 95, 99], method="linear")
    return LatencyStats(p50=float(p50), p90=float(p90), p95=float(p95), p99=float(p99),
                        mean=float(x.mean()), std=float(x.std(ddof=0)), min=float(x.min()), max=float(x.max()))


def p95(latencies_ms: Sequence[float] | np.ndarray) -> float:
    """The 95th percentile (ms) with :data:`PERCENTILE_METHOD`."""
    return float(np.percentile(_as_latencies(latencies_ms), 95, method="linear"))


def bootstrap_p95_ci(latencies_ms: Sequence[float] | np.ndarray, *, confidence: float = 0.95,
                     n_resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap ``confidence`` interval (ms) on p95 with :func:`scipy.stats.bootstrap`.

    Returns ``None`` when fewer than 20 iterations exist (a p95 of fewer points is one of the
    top two values and its bootstrap distribution is degenerate) or all values are equal.
    Seeded: the same input gives the same interval.
    """
    from scipy.stats import bootstrap

    x = _as_latencies(latencies_ms)
    if x.size < 20 or np.ptp(x) == 0:
        return None
    res = bootstrap((x,), lambda s, axis=-1: np.percentile(s, 95, axis=axis, method="linear"),
                    vectorized=True, n_resamples=n_resamples, confidence_level=confidence,
                    method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo, hi)


def p95_ratio_ci(a_rounds_ms: Sequence[Sequence[float]] | np.ndarray, b_rounds_ms: Sequence[Sequence[float]] | np.ndarray,
                 *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float] | None:
    """p95(a) / p95(b) and its ``confidence`` interval by a **paired round (block) bootstrap**.

    ``a_rounds_ms`` and ``b_rounds_ms`` are R×n arrays (ms; n may differ between a and b): round r holds the n single-call
    latencies of artifact a and of artifact b timed back to back in that round (interleaved,
    round-robin), so both saw the same machine load. A resample draws R round indices with
    replacement and takes *the same* rounds for a and b (paired), pooling their calls; the
    statistic is the ratio of the pooled p95s (:data:`PERCENTILE_METHOD`). Resampling whole rounds
    rather than single calls keeps the load drift and the autocorrelation within a round
    (non-overlapping block bootstrap, Carlstein 1986; Künsch 1989), and the pairing cancels load
    that both artifacts shared. Interval: percentile method (Efron & Tibshirani 1993, ch. 13)
    with :func:`scipy.stats.bootstrap` (``paired=True``), seeded.

    Returns (ratio, low, high), or ``None`` when fewer than 2 rounds or fewer than 20 calls per
    artifact exist (no meaningful p95 interval). Raises :class:`InputError` when a and b do
    not have the same number of rounds, or on non-finite/negative values.
    """
    from scipy.stats import bootstrap

    a = np.asarray(a_rounds_ms, dtype=np.float64)
    b = np.asarray(b_rounds_ms, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2:
        raise InputError(f"paired rounds: expected R×n arrays (rounds × calls), got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise InputError(f"paired rounds: a has {a.shape[0]} rounds, b has {b.shape[0]}; time them in the same rounds")
    _as_latencies(a, "a"), _as_latencies(b, "b")
    if a.shape[0] < 2 or a.size < 20 or b.size < 20:
        return None

    def ratio(idx, axis=-1):  # idx: (..., R) round indices → (...) ratios
        idx = np.asarray(idx, dtype=int)
        pa = np.percentile(a[idx].reshape(*idx.shape[:-1], -1), 95, axis=-1, method="linear")
        pb = np.percentile(b[idx].reshape(*idx.shape[:-1], -1), 95, axis=-1, method="linear")
        return pa / pb

    point = float(ratio(np.arange(a.shape[0])))
    res = bootstrap((np.arange(a.shape[0]),), ratio, vectorized=True, paired=True, n_resamples=n_resamples,
                    confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # degenerate bootstrap distribution (identical resamples)
        lo = hi = point
    return point, min(lo, point), max(hi, point)


def trial_spread_pct(trial_values: Sequence[float]) -> float | None:
    """Spread between trials: (max − min) / median × 100 of the per-trial values (e.g. p95).

    ``None`` for fewer than 2 trials (no spread to measure). Raises :class:`InputError` on
    non-finite or non-positive values.
    """
    v = np.asarray([t for t in trial_values if t is not None], dtype=np.float64)
    if v.size < 2:
        return None
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise InputError(f"trial values must be finite and > 0, got {v.tolist()}")
    return float((v.max() - v.min()) / np.median(v) * 100.0)


def drift_warning(trial_p95_ms: Sequence[float | None], threshold_pct: float = DEFAULT_DRIFT_PCT) -> str | None:
    """A warning sentence when the trials' p95 spread exceeds ``threshold_pct``; else ``None``."""
    spread = trial_spread_pct([t for t in trial_p95_ms if t is not None])
    if spread is None or spread <= threshold_pct:
        return None
    vals = ", ".join(f"{t:.3g}" for t in trial_p95_ms if t is not None)
    return (f"trials drift apart: p95 per trial [{vals}] ms spread {spread:.1f} % > {threshold_pct:g} %; "
            "the machine was not in a steady state (thermal throttling, background load): "
            "cool down longer or raise --trials before trusting a tight budget")


def combine_aggregate_trials(trials: Sequence[AggregateTrial]) -> LatencyStats:
    """Combine aggregate-only trials into one :class:`LatencyStats`, exactly where possible.

    * mean, min, max: exact over all iterations (count-weighted mean);
    * std: exact population std of the pooled iterations from the per-trial counts, means and
      population stds (law of total variance); ``None`` if any trial lacks std;
    * p50, p90, p95, p99: percentiles cannot be pooled from aggregates, so each is the
      **median over trials of the tool's own value** (stated in the result's
      ``percentile_method``); ``None`` if any trial lacks it (benchmark_model prints no p90/p99).
    """
    if not trials:
        raise InputError("no trials to combine")
    n = np.array([t.count for t in trials], dtype=np.float64)
    if np.any(n <= 0):
        raise InputError(f"trial counts must be ≥ 1, got {n.tolist()}")
    means = np.array([t.mean for t in trials])
    total = n.sum()
    mean = float((n * means).sum() / total)
    std = None
    if all(t.std is not None for t in trials):
        var_within = np.array([t.std for t in trials]) ** 2
        var = float((n * (var_within + means**2)).sum() / total - mean**2)
        std = float(np.sqrt(max(var, 0.0)))
    def med(name: str) -> float | None:
        vals = [getattr(t, name) for t in trials]
        return float(np.median(vals)) if all(v is not None for v in vals) else None

    return LatencyStats(p50=med("p50"), p90=med("p90"), p95=med("p95"), p99=med("p99"), mean=mean, std=std,
                        min=float(min(t.min for t in trials)), max=float(max(t.max for t in trials)))


@dataclass(frozen=True)
class TrialsSummary:
    """Everything a benchmark reports about latency, from its trials (ms)."""

    latency: LatencyStats
    p95_ci: tuple[float, float] | None
    trials_p95: list[float | None]
    spread_pct: float | None
    unavailable: list[str]
    percentile_method: str
    warnings: list[str]


def summarize_trials(trials_ms: Sequence[Sequence[float] | np.ndarray], *, drift_pct: float = DEFAULT_DRIFT_PCT,
                     seed: int = 0) -> TrialsSummary:
    """Per-trial per-iteration latencies (ms, warm-up already dropped) → pooled statistics,
    bootstrap CI on the pooled p95, p95 of each trial, their spread and a drift warning."""
    if not trials_ms:
        raise InputError("no trials to summarise")
    arrays = [_as_latencies(t, f"trial {i + 1}") for i, t in enumerate(trials_ms)]
    pooled = np.concatenate(arrays)
    trial_p95 = [p95(a) for a in arrays]
    ci = bootstrap_p95_ci(pooled, seed=seed)
    warnings = [w for w in [drift_warning(trial_p95, drift_pct)] if w]
    unavailable = [] if ci is not None else ["p95_ci_ms"]
    if ci is None:
        warnings.append(f"no bootstrap interval on p95: {pooled.size} timed iterations (need ≥ 20 distinct values)")
    return TrialsSummary(summarize(pooled), ci, trial_p95, trial_spread_pct(trial_p95), unavailable,
                         PERCENTILE_METHOD + " over all timed iterations of all trials, pooled", warnings)


def summarize_aggregate_trials(trials: Sequence[AggregateTrial], *, percentile_method: str,
                               drift_pct: float = DEFAULT_DRIFT_PCT) -> TrialsSummary:
    """Aggregate-only trials (tool statistics, no per-iteration times) → statistics via
    :func:`combine_aggregate_trials`; no bootstrap interval (``p95_ci_ms`` unavailable)."""
    lat = combine_aggregate_trials(trials)
    trial_p95 = [t.p95 for t in trials]
    warnings = [w for w in [drift_warning(trial_p95, drift_pct)] if w]
    spread = trial_spread_pct(trial_p95) if all(v is not None for v in trial_p95) else None
    return TrialsSummary(lat, None, trial_p95, spread, lat.unavailable + ["p95_ci_ms"], percentile_method, warnings)
