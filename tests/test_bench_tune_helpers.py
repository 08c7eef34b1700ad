"""benchmarks/bench_tune.py's pure parts: the p95 ratio with its paired round bootstrap interval
(optim.device_bench.stats.p95_ratio_ci), the issue-13 verdicts, identity by model-file digest,
the cell order, and the resume/identity paths of the Markdown. Plain arrays; no exports, no timing."""

from __future__ import annotations

import numpy as np
import pytest

from optim.device_bench.stats import p95_ratio_ci
from optim.errors import InputError

from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bt():
    return load_benchmark("bench_tune")


def _rounds(seed, scale=1.0, shape=(20, 10)):
    return np.random.default_rng(seed).gamma(5.0, 2.0, shape) * scale


def test_ratio_of_a_scaled_copy_is_exact_in_every_resample():
    a = _rounds(0)
    # p95 is scale-equivariant, and the pairing takes the same rounds of both: every resample gives 0.5
    r, lo, hi = p95_ratio_ci(a * 0.5, a)
    assert (r, lo, hi) == pytest.approx((0.5, 0.5, 0.5))
    assert p95_ratio_ci(a, a) == pytest.approx((1.0, 1.0, 1.0))


def test_clearly_slower_and_clearly_faster_have_intervals_off_one():
    slow = p95_ratio_ci(_rounds(1, 1.6), _rounds(2))
    fast = p95_ratio_ci(_rounds(3, 0.6), _rounds(4))
    assert slow[1] > 1.0 and slow[1] <= slow[0] <= slow[2]
    assert fast[2] < 1.0 and fast[1] <= fast[0] <= fast[2]


def test_same_distribution_straddles_one_and_is_seeded():
    a, b = _rounds(5), _rounds(6)
    r = p95_ratio_ci(a, b)
    assert r[1] < 1.0 < r[2]
    assert p95_ratio_ci(a, b) == r  # seeded
    assert p95_ratio_ci(a, b, seed=1) != r


def test_pairing_cancels_load_shared_by_both():
    # a shared per-round load factor (×1 … ×3) swamps the 10 % difference unless rounds stay paired
    load = np.linspace(1, 3, 20)[:, None]
    base = _rounds(7, shape=(20, 10)) * 0.05 + 10.0
    r, lo, hi = p95_ratio_ci(base * 0.9 * load, base * load)
    assert hi < 1.0 and r == pytest.approx(0.9, abs=0.02)


def test_ratio_ci_refuses_unpaired_and_says_none_when_too_few():
    with pytest.raises(InputError, match="same rounds"):
        p95_ratio_ci(_rounds(0, shape=(10, 10)), _rounds(1, shape=(12, 10)))
    with pytest.raises(InputError, match="NaN"):
        p95_ratio_ci(np.full((10, 10), np.nan), _rounds(1, shape=(10, 10)))
    assert p95_ratio_ci(_rounds(0, shape=(1, 50)), _rounds(1, shape=(1, 50))) is None  # one round: nothing to resample
    assert p95_ratio_ci(_rounds(0, shape=(3, 5)), _rounds(1, shape=(3, 5))) is None    # 15 calls: no p95 interval


def test_verdicts(bt):
    assert bt.ratio_verdict(None, identical=True) == "meets"
    assert bt.ratio_verdict((0.9, 0.85, 0.99)) == "meets"
    assert bt.ratio_verdict((0.95, 0.9, 1.0)) == "meets"          # upper bound exactly 1.0
    assert bt.ratio_verdict((1.0, 0.97, 1.04)) == "indistinguishable"
    assert bt.ratio_verdict((1.2, 1.01, 1.4)) == "NO"
    assert bt.ratio_verdict(None) is None
    assert bt.cell_verdict(["meets", "meets"]) == "meets"
    assert bt.cell_verdict(["meets", "indistinguishable"]) == "indistinguishable"
    assert bt.cell_verdict(["indistinguishable", "NO"]) == "NO"
    assert bt.cell_verdict(["meets", None]) is None
    assert bt.cell_verdict([]) is None


def test_identity_is_by_model_file_bytes_not_metadata(bt):
    a = {"files": [{"name": "model.onnx", "sha256": "ab", "bytes": 1}], "created_utc": "2026-01-01"}
    b = {"files": [{"name": "model.onnx", "sha256": "ab", "bytes": 1}], "created_utc": "2026-02-02"}
    c = {"files": [{"name": "model.onnx", "sha256": "cd", "bytes": 1}]}
    assert bt.model_digest(a) == bt.model_digest(b) != bt.model_digest(c)


def test_cell_order_is_cheapest_first(bt):
    order = bt.cell_order(list(bt.ARCHS), list(bt.FORMATS))
    assert len(order) == 12 == len(set(order)) and set(order) == {(m, f) for m in bt.ARCHS for f in bt.FORMATS}
    assert {f for _, f in order[:4]} == {"onnx"}                      # NNCF exports: minutes
    assert order[-2:] == [("resnet18", "tflite"), ("resnet18", "pte")]  # 13 slow INT8 exports each
    assert bt.cell_order(["resnet18", "x"], ["pte", "onnx"]) == [("resnet18", "onnx"), ("resnet18", "pte"),
                                                                  ("x", "pte"), ("x", "onnx")]


def test_markdown_says_same_artifact_and_lists_unmeasured_cells(bt):
    cell = {"model": "resnet18", "format": "onnx", "chosen_label": "onnx-fp32", "verdict": "indistinguishable",
            "p95_ms": {"chosen": 30.0, "fp32": 30.0, "int8": 29.0}, "chosen_size_mb": 46.8, "size_over_int8_limit": 4.0,
            "ratios": {"fp32": {"identical": True, "ratio": 1.0, "ci_low": 1.0, "ci_high": 1.0},
                       "int8": {"identical": False, "ratio": 1.03, "ci_low": 0.98, "ci_high": 1.08}},
            "load_before_timing": [3.0], "load_after_timing": [3.1], "tune_seconds": 100.0}
    settings = {"hw": 224, "classes": 10, "min_agreement": 0.9, "golden_per_class": 5, "max_top1_drop": 10.0,
                "p95_budget_ms": 5000.0, "max_trials": 3, "fallback_ks": "1", "sensitivity_unit": "block", "max_units": 8,
                "calib_size": 16, "rounds": 20, "runs": 10, "threads": 2}
    md = bt.to_markdown({"settings": settings, "host": {"platform": "x", "cpus": 2}, "cells": [cell]})
    assert "1 (same artifact)" in md and "1.030 [0.980, 1.080]" in md
    assert "0 meet" in md and "1 indistinguishable" in md and "11 not measured" in md
    assert "mobilenet_v2 | onnx | not measured" in md
