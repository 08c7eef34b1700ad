"""Pure metrics on plain arrays, each against a hand-computed expectation."""

from __future__ import annotations

import numpy as np
import pytest

from optim.golden_sets.metrics import (
    expected_calibration_error, macro_f1, multiclass_metrics, multilabel_metrics, per_class_prf, thresholds_for,
    topk_accuracy,
)

# 4 samples, 3 classes. Rankings: s0: 0>1>2, s1: 2>0>1, s2: 1>2>0, s3: 0>2>1
SCORES = np.array([[3.0, 2.0, 1.0], [2.0, 1.0, 3.0], [1.0, 3.0, 2.0], [3.0, 1.0, 2.0]])
Y = np.array([0, 0, 2, 1])


def test_topk_hand_computed_and_clipped_to_class_count():
    # top-1: only s0 right → 1/4; top-2: s0, s1 (0 is 2nd), s2 (2 is 2nd) → 3/4; top-5 → top-3 → 4/4
    assert topk_accuracy(SCORES, Y, 1) == 0.25
    assert topk_accuracy(SCORES, Y, 2) == 0.75
    assert topk_accuracy(SCORES, Y, 5) == 1.0
    assert topk_accuracy(SCORES[:0], Y[:0], 1) is None


def test_per_class_prf_undefined_values_are_nan_not_zero():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 0, 0])
    p, r, f, s = per_class_prf(y, pred, 4)
    # class 0: TP 1, FP 2, FN 1 → P 1/3, R 1/2, F1 = 2·1/(2+2+1) = 0.4
    assert p[0] == pytest.approx(1 / 3) and r[0] == 0.5 and f[0] == pytest.approx(0.4)
    # class 1: never predicted → precision undefined; recall 0; F1 0
    assert np.isnan(p[1]) and r[1] == 0 and f[1] == 0
    # class 2: predicted once, no sample → P 0, recall undefined
    assert p[2] == 0 and np.isnan(r[2])
    # class 3: nothing at all → all undefined
    assert np.isnan(p[3]) and np.isnan(r[3]) and np.isnan(f[3])
    assert s.tolist() == [2, 2, 0, 0]


def test_macro_f1_averages_only_classes_with_golden_samples():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 0, 0])
    # classes with support: 0 (F1 0.4) and 1 (F1 0) → 0.2 (sklearn's default would also
    # average the predicted-only class 2 and give 0.1333)
    assert macro_f1(y, pred, 4) == pytest.approx(0.2)
    assert macro_f1(y, pred, 4, classes=np.array([True, False, False, False])) == pytest.approx(0.4)
    assert macro_f1(y[:0], pred[:0], 4) is None


def test_ece_hand_computed_15_bins():
    conf = np.array([0.95, 0.95, 0.55, 0.25])
    correct = np.array([True, False, True, False])
    # bins: 0.95 → (14/15, 1]: acc 0.5, conf 0.95; 0.55 → (8/15, 9/15]: acc 1; 0.25 → (3/15, 4/15]: acc 0
    # ECE = 2/4·0.45 + 1/4·0.45 + 1/4·0.25 = 0.4
    assert expected_calibration_error(conf, correct) == pytest.approx(0.4)
    assert expected_calibration_error(conf[:0], correct[:0]) is None


def test_ece_bins_are_right_closed():
    # 1/15 belongs to the first bin (0, 1/15], 0.1 to the second: 0.5·|1 − 1/15| + 0.5·|0 − 0.1|
    # (if both fell into one bin the result would be |0.5 − 0.0833| = 0.4167)
    assert expected_calibration_error(np.array([1 / 15, 0.1]), np.array([True, False])) == pytest.approx(0.5 * (14 / 15) + 0.05)


def test_ece_of_perfectly_calibrated_bins_is_zero():
    conf = np.full(10, 0.7)
    correct = np.array([True] * 7 + [False] * 3)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)


def test_multiclass_metrics_head_and_tail():
    # class 2 is the only tail class. Correct: s0 only. Tail samples: s2 (wrong) → tail 0.0;
    # head samples s0, s1, s3 → 1/3.
    m = multiclass_metrics(SCORES, Y, tail_mask=np.array([False, False, True]))
    assert m.top1 == 0.25 and m.top2 == 0.75 and m.top5 == 1.0
    assert m.head_top1 == pytest.approx(1 / 3)
    assert m.tail_top1 == 0.0
    assert m.pred.tolist() == [0, 2, 1, 0]
    # per class: 0: TP1 FP1 FN1 → F1 .5; 1: TP0 FP1 FN1 → 0; 2: TP0 FP1 FN1 → 0 → macro 1/6
    assert m.macro_f1 == pytest.approx(1 / 6)
    assert 0 <= m.ece <= 1
    m2 = multiclass_metrics(SCORES, Y, tail_mask=None)
    assert m2.head_top1 is None and m2.tail_top1 is None


def test_multiclass_metrics_no_tail_samples_gives_none_not_zero():
    m = multiclass_metrics(SCORES, Y, tail_mask=np.array([False, False, False]))
    assert m.tail_top1 is None and m.head_top1 == 0.25


def _logit(p):
    return np.log(p / (1 - p))


def test_multilabel_metrics_with_missing_labels_hand_computed():
    nan = np.nan
    # tags A, B; 5 samples; probabilities and labels (NaN = missing)
    prob = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.4], [0.2, 0.9], [0.7, 0.6]])
    y = np.array([[1, 0], [1, nan], [0, 1], [nan, 1], [0, 1]], dtype=float)
    m = multilabel_metrics(_logit(prob), y, np.array([0.5, 0.5]))
    # A known rows 0,1,2,4: y 1,1,0,0, pred 1,1,0,1 → TP2 FP1 FN0: P 2/3, R 1, F1 0.8
    # B known rows 0,2,3,4: y 0,1,1,1, pred 0,0,1,1 → TP2 FP0 FN1: P 1, R 2/3, F1 0.8
    assert m.precision.tolist() == pytest.approx([2 / 3, 1.0])
    assert m.recall.tolist() == pytest.approx([1.0, 2 / 3])
    assert m.f1.tolist() == pytest.approx([0.8, 0.8])
    assert m.macro_f1 == pytest.approx(0.8)
    assert m.n_ignored == 2 and m.n_missing.tolist() == [1, 1] and m.n_known.tolist() == [4, 4]
    assert m.support.tolist() == [2, 3]
    assert m.n_used == 5
    # per-tag threshold: A at 0.75 drops the prediction on row 4 → A: TP2 FP0 → F1 1 → macro 0.9
    m2 = multilabel_metrics(_logit(prob), y, np.array([0.75, 0.5]))
    assert m2.f1[0] == pytest.approx(1.0) and m2.macro_f1 == pytest.approx(0.9)


def test_multilabel_tag_without_any_positive_is_left_out_of_macro_f1():
    y = np.array([[1, 0], [0, 0]], dtype=float)
    prob = np.array([[0.9, 0.1], [0.1, 0.2]])
    m = multilabel_metrics(_logit(prob), y, np.array([0.5, 0.5]), tail_mask=np.array([False, True]))
    assert np.isnan(m.f1[1])  # no positive label, no positive prediction: F1 undefined
    assert m.macro_f1 == pytest.approx(1.0)
    assert m.head_macro_f1 == pytest.approx(1.0) and m.tail_macro_f1 is None


def test_thresholds_for_overrides_and_errors():
    assert thresholds_for(["a", "b"], {"b": 0.3}).tolist() == [0.5, 0.3]
    with pytest.raises(ValueError, match="unknown tags"):
        thresholds_for(["a"], {"zz": 0.3})
    with pytest.raises(ValueError, match="strictly between"):
        thresholds_for(["a"], {"a": 1.0})
