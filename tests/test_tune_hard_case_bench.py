"""Pure helpers of ``benchmarks/tune_hard_case.py`` (issue 13's hard case): golden counts,
Wilson intervals, the attempt log and the Markdown (fast; the benchmark itself is run by hand)."""

from __future__ import annotations

import json

import pytest

from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("tune_hard_case")


def test_golden_counts_enlarge_only_the_tail_classes(bench):
    from optim.demo.data import TRAIN_COUNTS

    counts = bench.golden_counts(300)
    assert [c for c, n in zip(counts, TRAIN_COUNTS) if n < bench.TAIL_MAX_COUNT] == [300, 300, 300]
    assert all(c == 100 for c, n in zip(counts, TRAIN_COUNTS) if n >= bench.TAIL_MAX_COUNT)
    assert bench.golden_counts(50) == (100,) * 10  # never fewer than the demo's 100


def test_wilson_interval_matches_the_formula(bench):
    lo, hi = bench.wilson(668, 900)  # 74.2% of 900 tail images
    assert lo == pytest.approx(0.7126, abs=1e-3) and hi == pytest.approx(0.7697, abs=1e-3)
    assert bench.wilson(0, 0) == (0.0, 1.0)
    lo0, hi0 = bench.wilson(0, 10)
    assert lo0 == pytest.approx(0.0, abs=1e-12) and 0.2 < hi0 < 0.35


def test_markdown_lists_every_attempt_and_flags_the_break(bench, tmp_path):
    rec = {"arch": "mobilenet_v3_large", "hw": 128, "epochs": 3, "seed": 0}
    r = {"host": {"platform": "p", "cpus": 2}, "settings": {"arch": "a", "epochs": 3, "hw": 128, "max_tail_drop": 2.0,
                                                             "rounds": 1, "runs": 1, "threads": 2},
         "attempts": [{"recipe": rec, "train_seconds": 10.0, "golden_tail_images": 900, "load_average": [1.0],
                       "per_format": {"onnx": {"fp32_top1": 0.7, "fp32_tail_top1": 0.74, "int8_top1": 0.6,
                                               "int8_tail_top1": 0.66, "int8_tail_delta_pts": -8.0},
                                      "pte": {"fp32_top1": 0.7, "fp32_tail_top1": 0.74, "int8_top1": 0.7,
                                              "int8_tail_top1": 0.73, "int8_tail_delta_pts": -1.0}}}],
         "findings": ["f1"], "status": "PARTIAL"}
    md = bench.to_markdown(r)
    rows = [line for line in md.splitlines() if line.startswith("| mobilenet_v3_large")]
    assert len(rows) == 2 and "| YES |" in rows[0] and "| no |" in rows[1]
    assert "- f1" in md and "Status: PARTIAL" in md
    out = tmp_path / "r.json"
    out.write_text(json.dumps(r))
    assert bench.previous_attempts(out) == r["attempts"]
    assert bench.previous_attempts(tmp_path / "missing.json") == []
