"""Squeeze-and-Excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507, Fig. 2)."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """Channel gating: global average pool (squeeze) -> FC C->C/r -> ReLU -> FC C/r->C -> sigmoid (excite).

    The two FCs are 1x1 convolutions with biases, the layout of the authors' Caffe models and of timm's
    `seresnet*` (which is what makes SE-ResNet-50 exactly 28,088,024 parameters).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"SE reduction r={reduction} leaves no channels out of {channels}")
        reduced = channels // reduction
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x)  # (N, C, 1, 1): z_c of Eq. 2
        s = self.gate(self.fc2(self.relu(self.fc1(s))))  # (N, C, 1, 1): s of Eq. 3
        return x * s  # Eq. 4: channel-wise rescaling
