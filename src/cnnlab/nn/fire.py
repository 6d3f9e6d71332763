"""The Fire module of SqueezeNet (Iandola et al. 2016, arXiv:1602.07360, Sec. 3.2, Fig. 1).

A 1x1 "squeeze" layer cuts the channels to s1x1, then an "expand" layer of e1x1 1x1 filters and e3x3 3x3 filters
(padded by one, so both outputs have the same size) reads the squeezed map; the two outputs are concatenated.
The paper keeps s1x1 < e1x1 + e3x3 so the 3x3 filters see few input channels (strategy 2).
"""

from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    def __init__(self, in_ch: int, s1x1: int, e1x1: int, e3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_ch, s1x1, 1)
        self.squeeze_act = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(s1x1, e1x1, 1)
        self.expand1x1_act = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(s1x1, e3x3, 3, padding=1)
        self.expand3x3_act = nn.ReLU(inplace=True)
        self.out_channels = e1x1 + e3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_act(self.squeeze(x))  # (N, s1x1, H, W)
        e1 = self.expand1x1_act(self.expand1x1(s))  # (N, e1x1, H, W)
        e3 = self.expand3x3_act(self.expand3x3(s))  # (N, e3x3, H, W)
        return torch.cat([e1, e3], dim=1)  # (N, e1x1 + e3x3, H, W)
