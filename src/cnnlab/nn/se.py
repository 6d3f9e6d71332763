"""Squeeze-and-Excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507, Fig. 2).

The one SE block of cnnlab: SE-ResNet/SE-ResNeXt (nn/residual.py) and EfficientNet's MBConv (nn/mbconv.py)
differ only in the arguments they pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """Channel gating: global average pool (squeeze) -> FC C->C' -> act -> FC C'->C -> gate (excite).

    The two FCs are 1x1 convolutions with biases, the layout of the authors' Caffe models and of timm's
    `seresnet*` (which is what makes SE-ResNet-50 exactly 28,088,024 parameters) and of EfficientNet.

    - `reduction`: SENet's r, C' = C // r (the default rule).
    - `squeeze_channels`: C' itself, overriding `reduction`. MBConv sizes it from the block's *input* channels,
      not from the expanded `channels` the SE gates (EfficientNet's reference code).
    - `act`: SENet's ReLU (built in-place, as in ConvBNAct) or EfficientNet's SiLU; `gate`: the sigmoid of Eq. 3.
    - `act_name`: the attribute the activation is stored under: "relu" (SE-ResNet) or "act" (MBConv). It holds
      no parameters, but per-layer tables (`cnnlab analyze`) name the layer by it.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        squeeze_channels: int | None = None,
        act: Callable[[], nn.Module] = nn.ReLU,
        gate: Callable[[], nn.Module] = nn.Sigmoid,
        act_name: str = "relu",
    ):
        super().__init__()
        if squeeze_channels is None:
            if reduction < 1 or channels // reduction < 1:
                raise ValueError(f"SE reduction r={reduction} leaves no channels out of {channels}")
            squeeze_channels = channels // reduction
        elif squeeze_channels < 1:
            raise ValueError(f"SE needs at least one squeeze channel, got {squeeze_channels}")
        self.act_name = act_name
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        # Registered in this order (pool, fc1, act, fc2, gate) so that module listings read like Fig. 2.
        self.add_module(act_name, nn.ReLU(inplace=True) if act is nn.ReLU else act())
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1, bias=True)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x)  # (N, C, 1, 1): z_c of Eq. 2
        s = self.gate(self.fc2(getattr(self, self.act_name)(self.fc1(s))))  # (N, C, 1, 1): s of Eq. 3
        return x * s  # Eq. 4: channel-wise rescaling
