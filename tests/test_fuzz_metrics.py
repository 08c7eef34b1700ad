"""Fuzz table, area "metrics" (issue 14): bad top-k / per-tag / tail-tag budgets through the
real ``optim verify``. Each is an input error (exit 2) naming the key, raised before anything
is measured, except a tail-tag floor on a model without a multi-label head: that floor cannot
be checked, so it fails (exit 1) instead of passing silently."""

from __future__ import annotations

import pytest

from fuzz_harness import Case, make_workspace, run_case
from test_fuzz_policy import GOOD, policy_text

KS = ", ".join(f"{k} = 1.0" for k in range(2, 10))

CASES = [
    Case("metrics-topk-k-is-1", "metrics", policy_text(GOOD + "max_topk_drop_pts = { 1 = 1.0 }\n"), 2, "max_top1_drop_pts"),
    Case("metrics-topk-k-not-integer", "metrics", policy_text(GOOD + "max_topk_drop_pts = { two = 1.0 }\n"), 2,
         "defaults.max_topk_drop_pts"),
    Case("metrics-topk-k-negative", "metrics", policy_text(GOOD + 'max_topk_drop_pts = { "-3" = 1.0 }\n'), 2,
         "defaults.max_topk_drop_pts"),
    Case("metrics-topk-value-string", "metrics", policy_text(GOOD + 'max_topk_drop_pts = { 2 = "1" }\n'), 2,
         "defaults.max_topk_drop_pts.2"),
    Case("metrics-topk-value-bool", "metrics", policy_text(GOOD + "max_topk_drop_pts = { 5 = true }\n"), 2,
         "defaults.max_topk_drop_pts.5"),
    Case("metrics-topk-value-inf", "metrics", policy_text(GOOD + "max_topk_drop_pts = { 5 = inf }\n"), 2,
         "defaults.max_topk_drop_pts.5"),
    Case("metrics-topk-not-a-table", "metrics", policy_text(GOOD + "max_topk_drop_pts = 1.0\n"), 2, "defaults.max_topk_drop_pts"),
    Case("metrics-topk-same-k-twice", "metrics", policy_text(GOOD + "max_topk_drop_pts = { 2 = 1.0, 02 = 5.0 }\n"), 2, "twice"),
    Case("metrics-top2-and-topk-2", "metrics", policy_text(GOOD + "max_top2_drop_pts = 1.0\nmax_topk_drop_pts = { 2 = 9.0 }\n"), 2,
         "keep one"),
    Case("metrics-topk-too-many-after-merge", "metrics",
         policy_text(GOOD + f"max_topk_drop_pts = {{ {KS} }}\n[targets.\"onnx-*\"]\nmax_topk_drop_pts = {{ 20 = 1.0 }}\n"), 2,
         "at most 8"),
    Case("metrics-tag-f1-negative", "metrics", policy_text(GOOD + "max_tag_f1_drop_pts = -1\n"), 2, "defaults.max_tag_f1_drop_pts"),
    Case("metrics-tag-f1-string", "metrics", policy_text(GOOD + 'max_tag_f1_drop_pts = "10"\n'), 2, "defaults.max_tag_f1_drop_pts"),
    Case("metrics-tail-tag-nan", "metrics", policy_text(GOOD + "max_tail_tag_macro_f1_drop_pts = nan\n"), 2,
         "defaults.max_tail_tag_macro_f1_drop_pts"),
    Case("metrics-tag-key-typo", "metrics", policy_text(GOOD + "max_tags_f1_drop_pts = 5\n"), 2, "defaults.max_tags_f1_drop_pts"),
    Case("metrics-tail-tag-floor-as-percent", "metrics", policy_text(GOOD + "min_tail_tag_macro_f1 = 50\n"), 2,
         "defaults.min_tail_tag_macro_f1"),
    # measured: the world's model has one multiclass head, so a tail-tag floor has nothing to judge
    Case("metrics-tail-tag-floor-without-multilabel-head", "metrics", policy_text(GOOD + "min_tail_tag_macro_f1 = 0.1\n"), 1,
         "min_tail_tag_macro_f1"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_metrics(case, fuzz_world, tmp_path, monkeypatch):
    run_case(case, make_workspace(tmp_path, fuzz_world), monkeypatch)
