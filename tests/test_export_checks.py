"""Export checks on plain arrays: agreement, errors, the FP32 1e-4 verdict."""

from __future__ import annotations

import numpy as np
import pytest

from optim.model_card import Head, ModelCard
from optim.optimize.export_checks import FP32_MAX_ABS_TOLERANCE, compare_outputs, summarize_check

CARD = ModelCard(heads=(Head(name="cls", kind="multiclass", labels=("a", "b", "c")),
                        Head(name="tags", kind="multilabel", labels=("x", "y"))))


def test_compare_outputs_per_head():
    ref = {"cls": np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]]), "tags": np.array([[1.0, -1.0], [-0.5, 0.5]])}
    cand = {"cls": np.array([[3.0, 1.0, 0.5], [0.0, 1.0, 1.5]]), "tags": np.array([[0.5, -1.0], [0.5, 0.5]])}
    r = compare_outputs(ref, cand, CARD)
    assert r["cls"]["top1_agreement"] == 0.5  # second row: argmax 1 → 2
    assert r["cls"]["max_abs_error"] == pytest.approx(1.0)
    assert r["cls"]["mean_abs_error"] == pytest.approx(2.0 / 6)
    assert r["cls"]["max_abs_reference"] == 3.0
    assert r["tags"]["top1_agreement"] == 0.75  # one of four sign decisions flips
    with pytest.raises(ValueError, match="shape"):
        compare_outputs(ref, {"cls": cand["cls"][:1], "tags": cand["tags"]}, CARD)


def test_fp32_verdict_uses_1e4_max_abs_and_quantized_are_not_judged():
    per_head = {"cls": {"top1_agreement": 1.0, "max_abs_error": 5e-5, "mean_abs_error": 1e-6, "max_abs_reference": 4.0}}
    assert summarize_check(per_head, "fp32", 8, "x")["passed"] is True
    per_head["cls"]["max_abs_error"] = FP32_MAX_ABS_TOLERANCE * 1.5
    assert summarize_check(per_head, "fp32", 8, "x")["passed"] is False
    q = summarize_check(per_head, "int8", 8, "calibration images")
    assert q["passed"] is None and q["tolerance"] is None and q["n_inputs"] == 8
