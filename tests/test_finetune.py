"""Recovery fine-tuning: resume gives the same weights, gradient health, divergence, data checks."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torchvision

from conftest import small_card
from optim.errors import InputError
from optim.optimize.finetune import FinetuneConfig, TrainingDiverged, finetune, gradient_health
from optim.optimize.pruning import prune
from optim.optimize.train_data import TrainSet, check_not_golden
from train_split import write_mnist_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_mnist_split(tmp_path_factory.mktemp("train"), range(0, 5000, 125))  # 40 digits


@pytest.fixture(scope="module")
def teacher_student():
    torch.manual_seed(0)
    card = small_card(10, 32, "torchvision:resnet18")
    teacher = torchvision.models.resnet18(num_classes=10).eval()
    student = prune(teacher, card, ratio=0.5).model
    return card, teacher, student


def test_interrupt_and_resume_matches_uninterrupted(split, teacher_student, tmp_path):
    card, teacher, student0 = teacher_student
    data = TrainSet.load(split, card)
    cfg = FinetuneConfig(epochs=2, batch_size=10, lr=1e-3, checkpoint_every=3, grad_every=2, seed=3)  # 4 steps/epoch → 8
    full = finetune(copy.deepcopy(student0), teacher, card, data, cfg, tmp_path / "a", progress=False)
    assert full.steps == 8

    def interrupt(step):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(copy.deepcopy(student0), teacher, card, data, cfg, tmp_path / "b", progress=False, on_step=interrupt)
    resumed = finetune(copy.deepcopy(student0), teacher, card, data, cfg, tmp_path / "b", progress=False)
    assert resumed.resumed_from_step == 6  # last checkpoint before the interruption
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], student0.state_dict()["conv1.weight"])  # it did train
    events = [json.loads(line) for line in (tmp_path / "b" / "run_log.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and "interrupted" in kinds and "resume" in kinds and kinds[-1] == "done"
    gh = [e for e in events if e["event"] == "grad_health"]
    assert gh and "conv1" in gh[0]["norms"] and "fc" in gh[0]["norms"] and gh[0]["ratio"] > 0


def test_resume_refuses_a_different_config(split, teacher_student, tmp_path):
    card, teacher, student0 = teacher_student
    data = TrainSet.load(split, card)
    cfg = FinetuneConfig(epochs=1, batch_size=20, max_steps=1)
    finetune(copy.deepcopy(student0), teacher, card, data, cfg, tmp_path, progress=False)
    # the teacher is used, not changed: a later deep copy of it (a second QAT backend) must still be trainable
    assert all(p.requires_grad for p in teacher.parameters())
    with pytest.raises(InputError, match="different run"):
        finetune(copy.deepcopy(student0), teacher, card, data, FinetuneConfig(epochs=1, batch_size=20, max_steps=1, lr=0.5), tmp_path, progress=False)


def test_gradient_health_pure():
    norms = {"conv1": 1e-6, "layer1": 2e-6, "layer2": 1.0, "layer3": 0.5, "fc": 1.5}
    h = gradient_health(norms, n_edge=2, vanishing_ratio=1e-3)
    assert h["first"] == ["conv1", "layer1"] and h["last"] == ["layer3", "fc"]
    assert h["ratio"] == pytest.approx(1.5e-6 / 1.0)
    assert h["warnings"] and "vanishing" in h["warnings"][0]
    assert not gradient_health({"a": 1.0, "b": 1.0}, 3, 1e-3)["warnings"]
    bad = gradient_health({"a": 1.0, "b": math.inf, "c": math.nan}, 1, 1e-3)
    assert bad["nonfinite"] == ["b", "c"] and bad["ratio"] is None


def test_vanishing_warning_reaches_callback_and_log(split, teacher_student, tmp_path):
    card, teacher, student0 = teacher_student
    data = TrainSet.load(split, card)
    seen = []
    cfg = FinetuneConfig(epochs=1, batch_size=20, max_steps=1, vanishing_ratio=1e9)  # any ratio is "vanishing"
    res = finetune(copy.deepcopy(student0), None, card, data, cfg, tmp_path, progress=False, on_warning=seen.append)
    assert seen and "vanishing gradients" in seen[0] and res.warnings == seen


def test_nonfinite_gradient_stops_with_clear_error(split, teacher_student, tmp_path):
    card, teacher, student0 = teacher_student
    data = TrainSet.load(split, card)
    student = copy.deepcopy(student0)
    student.layer2[0].conv1.weight.register_hook(lambda g: g * math.inf)
    before = student.state_dict()["layer2.0.conv1.weight"].clone()
    with pytest.raises(TrainingDiverged, match="layer2.0.conv1"):
        finetune(student, teacher, card, data, FinetuneConfig(epochs=1, batch_size=20, max_steps=2), tmp_path, progress=False)
    assert torch.equal(student.state_dict()["layer2.0.conv1.weight"], before)  # no step taken with the bad gradient


def test_train_data_checks(split, tmp_path):
    card = small_card(10, 32)
    ts = TrainSet.load(split, card)
    assert len(ts) == 40 and ts.images([0, 1], card).shape == (2, 3, 32, 32)
    with pytest.raises(InputError, match="golden set"):
        check_not_golden(split, split)
    copy_dir = write_mnist_split(tmp_path / "copy", range(0, 5000, 125))
    with pytest.raises(InputError, match="manifests are identical"):
        check_not_golden(copy_dir, split)
    other = write_mnist_split(tmp_path / "other", range(1, 11), golden_json=True)
    g2 = write_mnist_split(tmp_path / "g2", range(60, 70), golden_json=True)
    with pytest.raises(InputError, match="golden.json"):
        check_not_golden(other, g2)
    check_not_golden(split, other)  # a different set passes
    bad = small_card(3, 32)  # labels 0..2 only
    with pytest.raises(InputError, match=r"row \d+ .*not a class"):
        TrainSet.load(split, bad)


def test_two_head_manifest_with_missing_tags(tmp_path):
    import csv

    from PIL import Image

    from optim.model_card import Head, InputSpec, ModelCard

    (tmp_path / "img").mkdir()
    rows = [("a", "0", "1", ""), ("b", "1", "0", "1"), ("c", "", "1", "0")]
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", "cat", "tags:y", "tags:x"])  # tag columns in another order than the card
        for sid, cat, ty, tx in rows:
            Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "img" / f"{sid}.png")
            w.writerow([sid, f"img/{sid}.png", cat, ty, tx])
    card = ModelCard(input=InputSpec(shape=(1, 3, 8, 8)),
                     heads=(Head(name="cat", kind="multiclass", labels=("1", "0")), Head(name="tags", kind="multilabel", labels=("x", "y"))))
    ts = TrainSet.load(tmp_path, card)
    assert ts.targets["cat"].tolist() == [1, 0, -1]  # card order "1", "0"; empty = −1
    t = ts.targets["tags"]
    assert math.isnan(t[0, 0]) and t[0, 1] == 1 and t[1].tolist() == [1, 0] and t[2].tolist() == [0, 1]
