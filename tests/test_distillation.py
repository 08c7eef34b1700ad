"""Distillation loss against hand-computed values (Hinton et al., 2015)."""

from __future__ import annotations

import math

import pytest
import torch

from optim.errors import InputError
from optim.model_card import Head, ModelCard
from optim.optimize.distillation import DistillConfig, distillation_loss, multiclass_kd_loss, multilabel_kd_loss


def test_multiclass_by_hand():
    s, t, y = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([2])
    # CE = logsumexp(1,2,3) − 3; at T = 2 the tempered softmaxes are mirror images with
    # log(p/q) = ±1 on the outer classes, so KL = p0 − p2 with p = softmax(1.5, 1, 0.5).
    ce = math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3
    z = math.exp(1.5) + math.exp(1) + math.exp(0.5)
    kl = (math.exp(1.5) - math.exp(0.5)) / z
    expected = 0.3 * ce + 0.7 * 4 * kl
    assert multiclass_kd_loss(s, t, y, alpha=0.3, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.01872, rel=1e-5)
    # label-only and teacher-only ends
    assert multiclass_kd_loss(s, None, y, 0.3, 2.0).item() == pytest.approx(ce, rel=1e-6)
    assert multiclass_kd_loss(s, t, y, 0.0, 2.0).item() == pytest.approx(4 * kl, rel=1e-6)
    # identical teacher and student: the soft term vanishes
    assert multiclass_kd_loss(s, s.clone(), y, 0.0, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_multiclass_unlabelled_rows_use_teacher_only():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    t = s.clone()
    y = torch.tensor([2, -1])
    ce_row0 = math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3
    assert multiclass_kd_loss(s, t, y, 1.0, 1.0).item() == pytest.approx(ce_row0, rel=1e-6)


def test_multilabel_by_hand_with_missing_labels():
    s, t = torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]])
    y = torch.tensor([[1.0, float("nan")]])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    bce = math.log(2)  # only cell (0, 0) is labelled: −log σ(0)
    p0, p1 = sig(2.0), sig(0.0)
    soft0 = -(p0 * math.log(sig(0.0)) + (1 - p0) * math.log(1 - sig(0.0)))
    soft1 = -(p1 * math.log(sig(2.0)) + (1 - p1) * math.log(1 - sig(2.0)))
    expected = 0.5 * bce + 0.5 * (soft0 + soft1) / 2
    assert multilabel_kd_loss(s, t, y, 0.5, 1.0).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.801592, rel=1e-5)


def test_two_head_sum_and_config_checks():
    card = ModelCard(heads=(Head(name="c", kind="multiclass", labels=("a", "b", "c")), Head(name="t", kind="multilabel", labels=("x", "y"))))
    s = {"c": torch.tensor([[1.0, 2.0, 3.0]]), "t": torch.tensor([[0.0, 2.0]])}
    te = {"c": torch.tensor([[3.0, 2.0, 1.0]]), "t": torch.tensor([[2.0, 0.0]])}
    y = {"c": torch.tensor([2]), "t": torch.tensor([[1.0, float("nan")]])}
    cfg = DistillConfig(alpha=0.5, temperature=1.0)
    total = distillation_loss(s, te, y, card, cfg).item()
    parts = multiclass_kd_loss(s["c"], te["c"], y["c"], 0.5, 1.0).item() + multilabel_kd_loss(s["t"], te["t"], y["t"], 0.5, 1.0).item()
    assert total == pytest.approx(parts, rel=1e-6)
    with pytest.raises(InputError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(InputError, match="temperature"):
        DistillConfig(temperature=0)
