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
