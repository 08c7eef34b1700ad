"""Two-head digit classifiers for the bake-off (``benchmarks/bakeoff.py``).

A torchvision backbone with its classifier removed is the shared trunk; two linear heads read
its pooled features:

* ``digit`` — multiclass, 10 logits (digits 0–9), float32 N×10;
* ``shape`` — multi-label, 3 logits (tags loop, straight, curve; sigmoid > 0.5 = on), float32 N×3.

``forward(x)`` takes float32 N×3×H×W (the model card's preprocessing) and returns the dict
``{"digit": N×10, "shape": N×3}``; optim reads dict outputs by head name (model card
``[[heads]]``). Referenced from a card as ``architecture = "bakeoff_models:resnet18_two_head"``
with ``allowed_modules = ["bakeoff_models"]`` (``benchmarks/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import torch
from torch import nn

DIGITS = 10
TAGS = ("loop", "straight", "curve")


class TwoHead(nn.Module):
    """``trunk`` maps N×3×H×W to N×``features``; ``digit`` and ``shape`` are linear heads on it."""

    def __init__(self, trunk: nn.Module, features: int, digits: int = DIGITS, tags: int = len(TAGS)):
        super().__init__()
        self.trunk = trunk
        self.digit = nn.Linear(features, digits)
        self.shape = nn.Linear(features, tags)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.trunk(x)
        return {"digit": self.digit(f), "shape": self.shape(f)}


def resnet18_two_head(digits: int = DIGITS, tags: int = len(TAGS)) -> TwoHead:
    """torchvision ``resnet18`` (random init) with ``fc`` removed: 512 pooled features."""
    import torchvision

    trunk = torchvision.models.resnet18()
    features = trunk.fc.in_features
    trunk.fc = nn.Identity()
    return TwoHead(trunk, features, digits, tags)


def mobilenet_v2_two_head(digits: int = DIGITS, tags: int = len(TAGS)) -> TwoHead:
    """torchvision ``mobilenet_v2`` (random init) with its classifier removed: 1280 pooled features
    (the classifier's dropout is dropped too)."""
    import torchvision

    trunk = torchvision.models.mobilenet_v2()
    features = trunk.classifier[-1].in_features
    trunk.classifier = nn.Identity()
    return TwoHead(trunk, features, digits, tags)


FACTORIES = {"resnet18": resnet18_two_head, "mobilenet_v2": mobilenet_v2_two_head}
