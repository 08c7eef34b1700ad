"""A small CNN whose INT8 quantization collapses deterministically (issue 13 tests).

``OutlierNet``: conv(3→8, 3×3) → ReLU → global average pool → linear(8→10). Channel 7 of the
convolution has zero weights and a bias of 10^4: a constant activation the classifier ignores
(its weights from channel 7 are zero). Per-tensor INT8 activations must cover [0, 10^4]
(a step of ~40–80), so the informative channels (|x| < 1) all round to zero and every image
gets the same logits: top-1 agreement with FP32 collapses to the share of the most frequent
FP32 class. Keeping ``conv`` and ``head`` in float repairs it.
"""

from __future__ import annotations

import torch
from torch import nn

OUTLIER = 1e4


class OutlierNet(nn.Module):
    def __init__(self, num_classes: int = 10, outlier: float = OUTLIER):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, num_classes)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.copy_(torch.randn(8, generator=g) * 0.1)
            self.conv.weight[7].zero_()
            self.conv.bias[7] = outlier
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=g) * 5.0)
            self.head.weight[:, 7] = 0.0
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.act(self.conv(x))), 1))


def outlier_net(num_classes: int = 10) -> OutlierNet:
    """Factory for the model card's ``architecture = "collapse_model:outlier_net"``."""
    return OutlierNet(num_classes).eval()


def plain_net(num_classes: int = 10) -> OutlierNet:
    """The same network without the outlier channel (its bias is 0): quantizes normally."""
    return OutlierNet(num_classes, outlier=0.0).eval()
