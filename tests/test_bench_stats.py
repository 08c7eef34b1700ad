"""Latency statistics on plain arrays, against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from optim.device_bench.result import BenchResult, DeviceInfo
from optim.device_bench.stats import (AggregateTrial, LatencyStats, bootstrap_p95_ci, combine_aggregate_trials,
                                      drift_warning, drop_warmup, summarize, summarize_aggregate_trials,
                                      summarize_trials, trial_spread_pct)
from optim.errors import InputError


def test_type7_percentiles_mean_std_by_hand():
    # x = 1..10; type 7: h = (n−1)q, value = x[floor h] + (h − floor h)(x[floor h + 1] − x[floor h])
    s = summarize(np.arange(1, 11, dtype=float))
    assert s.p50 == pytest.approx(5.5)    # h = 4.5
    assert s.p90 == pytest.approx(9.1)    # h = 8.1 → 9 + 0.1
    assert s.p95 == pytest.approx(9.55)   # h = 8.55
    assert s.p99 == pytest.approx(9.91)   # h = 8.91
    assert s.mean == pytest.approx(5.5)
    assert s.std == pytest.approx(math.sqrt(8.25))  # population: Σ(x−5.5)²/10 = 82.5/10
    assert (s.min, s.max) == (1.0, 10.0)
    assert s.unavailable == []


def test_p95_is_a_tail_statistic_not_a_function_of_the_mean():
    # same mean (10 ms), different tails: p95 must differ
    flat = np.full(100, 10.0)
    spiky = np.r_[np.full(90, 9.0), np.full(10, 19.0)]
    assert summarize(flat).mean == pytest.approx(summarize(spiky).mean)
    assert summarize(flat).p95 == 10.0 and summarize(spiky).p95 == 19.0


def test_warmup_is_dropped_before_statistics():
    x = [100.0, 50.0, 1.0, 2.0, 3.0]
    np.testing.assert_array_equal(drop_warmup(x, 2), [1.0, 2.0, 3.0])
    assert summarize(drop_warmup(x, 2)).max == 3.0
    with pytest.raises(InputError, match="warm-up"):
        drop_warmup([1.0, 2.0], 2)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, -0.5], [float("inf")]])
def test_bad_latency_arrays_are_rejected(bad):
    with pytest.raises(InputError):
        summarize(bad)


def test_trial_spread_and_drift_warning():
    assert trial_spread_pct([10.0, 11.0, 12.0]) == pytest.approx(2 / 11 * 100)
    assert trial_spread_pct([10.0]) is None
    assert drift_warning([10.0, 10.5, 10.2], 10.0) is None          # 4.9 % ≤ 10 %
    w = drift_warning([10.0, 10.5, 13.0], 10.0)                      # 28.6 %
    assert w is not None and "28.6 %" in w


def test_bootstrap_ci_brackets_p95_is_seeded_and_covers_the_true_quantile():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, 800)  # true p95 = 0.95; binomial SE of the 95th order statistic ≈ 0.008
    lo, hi = bootstrap_p95_ci(x, seed=3, n_resamples=1000)
    assert lo <= summarize(x).p95 <= hi
    assert lo < 0.95 < hi
    assert hi - lo < 0.05
    assert bootstrap_p95_ci(x, seed=3, n_resamples=1000) == (lo, hi)
    assert bootstrap_p95_ci(np.arange(10.0)) is None       # too few iterations
    assert bootstrap_p95_ci(np.full(100, 5.0)) is None      # no spread to resample


def test_summarize_trials_pools_iterations_and_reports_each_trial():
    t1 = np.arange(1, 11, dtype=float)
    t2 = np.arange(11, 21, dtype=float)
    s = summarize_trials([t1, t2], drift_pct=10.0)
    assert s.latency.p95 == pytest.approx(np.percentile(np.r_[t1, t2], 95))  # pooled: 19.05
    assert s.trials_p95 == [pytest.approx(9.55), pytest.approx(19.55)]
    assert s.spread_pct == pytest.approx((19.55 - 9.55) / np.median([9.55, 19.55]) * 100)
    assert any("drift" in w for w in s.warnings)
    assert s.p95_ci is not None and "Hyndman & Fan type 7" in s.percentile_method


def test_combine_aggregate_trials_exact_pooling():
    # trial A: values [1, 3] → mean 2, population std 1; trial B: [5, 7] → mean 6, std 1
    a = AggregateTrial(count=2, mean=2.0, std=1.0, min=1.0, max=3.0, p50=3.0, p95=3.0)
    b = AggregateTrial(count=2, mean=6.0, std=1.0, min=5.0, max=7.0, p50=7.0, p95=7.0)
    s = combine_aggregate_trials([a, b])
    assert s.mean == pytest.approx(4.0)                         # mean of [1, 3, 5, 7]
    assert s.std == pytest.approx(np.std([1, 3, 5, 7]))          # sqrt(5), pooled exactly
    assert (s.min, s.max) == (1.0, 7.0)
    assert s.p95 == pytest.approx(5.0)                           # median of the tool's trial p95s
    assert s.p90 is None and s.p99 is None
    # unequal counts weight the mean
    c = AggregateTrial(count=3, mean=10.0, std=0.0, min=10.0, max=10.0)
    assert combine_aggregate_trials([a, c]).mean == pytest.approx((2 * 2 + 3 * 10) / 5)


def test_aggregate_trials_without_percentiles_leave_them_unavailable():
    old = [AggregateTrial(count=50, mean=249.684, std=1.442, min=247.067, max=254.474)] * 2
    s = summarize_aggregate_trials(old, percentile_method="tool")
    assert s.latency.p95 is None and s.latency.p50 is None   # never derived from mean/std
    assert {"p50", "p90", "p95", "p99", "p95_ci_ms"} <= set(s.unavailable)
    assert s.latency.mean == pytest.approx(249.684)
    assert s.spread_pct is None and s.p95_ci is None


def test_bench_result_json_contract_round_trip(tmp_path):
    r = BenchResult(artifact="a/onnx-int8", format="onnx", device=DeviceInfo("pixel6a", "android", serial="X1"),
                    threads=2, runs=100, warmup=10, trials=3,
                    latency=LatencyStats(p50=1.0, p90=None, p95=2.0, p99=None, mean=1.1, std=None, min=0.9, max=3.0),
                    p95_ci_ms=None, trials_p95_ms=[2.0, 2.1, 1.9], trial_spread_pct=10.0, peak_memory_mb=None,
                    percentile_method="tool", unavailable=["p90", "p99", "std", "p95_ci_ms", "peak_memory_mb"],
                    warnings=["w"])
    d = json.loads(r.to_json())
    for key in ("schema_version", "artifact", "format", "device", "threads", "runs", "warmup", "trials", "latency_ms",
                "p95_ci_ms", "trials_p95_ms", "trial_spread_pct", "peak_memory_mb", "unavailable",
                "percentile_method", "warnings"):
        assert key in d, key
    assert d["schema_version"] == 1
    assert set(d["latency_ms"]) == {"p50", "p90", "p95", "p99", "mean", "std", "min", "max"}
    assert d["latency_ms"]["p99"] is None and d["device"] == {**d["device"], "name": "pixel6a", "kind": "android", "serial": "X1"}
    r.save(tmp_path / "r.json")
    back = BenchResult.load(tmp_path / "r.json")
    assert back.to_dict() == d
    with pytest.raises(InputError, match="latency_ms"):
        BenchResult.from_dict({k: v for k, v in d.items() if k != "latency_ms"})
