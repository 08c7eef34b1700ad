"""Paired bootstrap intervals, exact McNemar, agreement — and the weighted metric forms used in
the bootstrap agree with the scikit-learn point metrics."""

from __future__ import annotations

import numpy as np
import pytest

from optim.golden_sets.head_report import multiclass_head_report
from optim.golden_sets.metrics import macro_f1, multilabel_metrics
from optim.golden_sets.stats import (
    agreement_rate, mcnemar_exact_p, paired_bootstrap, resample_weights, weighted_accuracy, weighted_class_accuracy,
    weighted_macro_f1, weighted_multilabel_macro_f1,
)
from optim.golden_sets.tail import TailSplit


def _acc_stats(t_correct, r_correct):
    return {"top1": (lambda w: weighted_accuracy(w, t_correct), lambda w: weighted_accuracy(w, r_correct))}


def test_identical_predictions_give_exactly_zero_with_zero_width_interval():
    rng = np.random.default_rng(1)
    correct = rng.random(150) < 0.7
    iv = paired_bootstrap(_acc_stats(correct, correct), 150, resamples=500)["top1"]
    assert (iv.value, iv.ci_low, iv.ci_high) == (0.0, 0.0, 0.0)
    assert not iv.significant_drop


def test_constructed_real_drop_gives_interval_below_zero():
    ref = np.ones(200, dtype=bool)
    tgt = ref.copy()
    tgt[:40] = False  # 40 of 200 images newly wrong: −20 points
    iv = paired_bootstrap(_acc_stats(tgt, ref), 200, resamples=1000)["top1"]
    assert iv.value == pytest.approx(-0.2)
    assert iv.ci_low < -0.2 < iv.ci_high < 0
    assert iv.significant_drop
    # the binomial sd of the delta is sqrt(.2·.8/200) ≈ 0.028 → 95 % half-width ≈ 0.055
    assert 0.03 < (iv.ci_high - iv.ci_low) / 2 < 0.08


def test_one_changed_image_is_not_a_significant_drop():
    ref = np.ones(200, dtype=bool)
    tgt = ref.copy()
    tgt[7] = False
    iv = paired_bootstrap(_acc_stats(tgt, ref), 200, resamples=1000)["top1"]
    assert iv.value == pytest.approx(-0.005)
    assert iv.ci_high == 0.0  # the image is missing from ~37 % of resamples
    assert not iv.significant_drop


def test_bootstrap_is_reproducible_with_a_seed_and_varies_without():
    rng = np.random.default_rng(2)
    r = rng.random(100) < 0.8
    t = rng.random(100) < 0.7
    a = paired_bootstrap(_acc_stats(t, r), 100, resamples=300, seed=5)["top1"]
    b = paired_bootstrap(_acc_stats(t, r), 100, resamples=300, seed=5)["top1"]
    c = paired_bootstrap(_acc_stats(t, r), 100, resamples=300, seed=6)["top1"]
    assert a == b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_resample_weights_are_multiplicities_summing_to_n_in_chunks():
    chunks = list(resample_weights(7, resamples=10, seed=0))
    w = np.concatenate(chunks)
    assert w.shape == (10, 7)
    assert (w.sum(axis=1) == 7).all() and (w >= 0).all()


def test_weighted_forms_equal_sklearn_metrics_at_unit_weights():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, 80)
    pred = np.where(rng.random(80) < 0.6, y, rng.integers(0, 6, 80))
    ones = np.ones((1, 80))
    assert weighted_macro_f1(ones, y, pred, 6)[0] == pytest.approx(macro_f1(y, pred, 6))
    acc = weighted_class_accuracy(ones, pred == y, y, 6)[0]
    for c in range(6):
        assert acc[c] == pytest.approx(np.mean(pred[y == c] == c))
    # multi-label with 20 % missing labels
    yl = (rng.random((80, 4)) < 0.4).astype(float)
    yl[rng.random((80, 4)) < 0.2] = np.nan
    logits = rng.normal(size=(80, 4))
    m = multilabel_metrics(logits, yl, np.full(4, 0.5))
    assert weighted_multilabel_macro_f1(ones, yl, m.pred)[0] == pytest.approx(m.macro_f1)


def test_mcnemar_exact_hand_computed():
    ref = np.array([1, 1, 1, 1, 1, 0, 1, 1], dtype=bool)
    tgt = np.array([0, 0, 0, 0, 0, 1, 1, 1], dtype=bool)
    # b = 5 (ref right, target wrong), c = 1 → P(X ≤ 1) + P(X ≥ 5), X ~ Bin(6, .5) = 14/64
    assert mcnemar_exact_p(ref, tgt) == pytest.approx(14 / 64)
    assert mcnemar_exact_p(ref, ref) == 1.0
    assert mcnemar_exact_p(np.array([1, 1], bool), np.array([0, 0], bool)) == pytest.approx(0.5)


def test_agreement_rate_multiclass_and_multilabel_rows():
    assert agreement_rate(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    a = np.array([[1, 0], [1, 1]], dtype=bool)
    b = np.array([[1, 0], [1, 0]], dtype=bool)
    assert agreement_rate(a, b) == 0.5
    assert agreement_rate(a[:0], b[:0]) is None


def test_head_report_flags_the_class_with_a_real_drop_only():
    k, per = 3, 60
    y = np.repeat(np.arange(k), per)
    ref_logits = np.eye(k)[y] * 5.0  # reference: all correct
    tgt_logits = ref_logits.copy()
    drop = np.where(y == 2)[0][:30]  # class 2 loses half its images to class 0
    tgt_logits[drop] = np.eye(k)[0] * 5.0
    tgt_logits[np.where(y == 1)[0][0]] = np.eye(k)[0] * 5.0  # class 1 loses one image: noise
    rep = multiclass_head_report(["a", "b", "c"], tgt_logits, y, TailSplit(np.array([False, False, True]), "explicit"), ref_logits,
                                 resamples=1000)
    d = rep["delta"]
    assert d["significant_drops"] == ["c"]
    rows = {r["label"]: r for r in d["per_class"]}
    assert rows["c"]["value"] == pytest.approx(-0.5) and rows["c"]["ci_high"] < 0
    assert rows["b"]["value"] == pytest.approx(-1 / 60) and not rows["b"]["significant"]
    assert rows["a"]["value"] == 0.0 and (rows["a"]["ci_low"], rows["a"]["ci_high"]) == (0.0, 0.0)
    assert d["top1"]["value"] == pytest.approx(-31 / 180)
    assert d["tail_top1"]["value"] == pytest.approx(-0.5) and d["head_top1"]["value"] == pytest.approx(-1 / 120)
    assert d["agreement"] == pytest.approx(1 - 31 / 180)
    assert d["mcnemar_p"] < 1e-6
    assert rep["metrics"]["top1"] == pytest.approx(1 - 31 / 180)
    assert rep["reference_metrics"]["top1"] == 1.0


def test_head_report_class_without_samples_has_null_delta_and_missing_labels_counted():
    y = np.array([0, 0, 1, -1])
    logits = np.eye(3)[[0, 0, 1, 2]]
    rep = multiclass_head_report(["a", "b", "c"], logits, y, TailSplit(None, "none"), logits, resamples=200)
    assert rep["n_used"] == 3 and rep["n_missing_labels"] == 1
    c = rep["delta"]["per_class"][2]
    assert c["support"] == 0 and c["value"] is None and c["ci_low"] is None and not c["significant"]
    assert rep["metrics"]["head_top1"] is None and rep["delta"]["tail_top1"]["value"] is None
