"""DenseNet-BC building blocks (Huang et al. 2017, "Densely Connected Convolutional Networks",
arXiv:1608.06993, Sec. 3): the bottleneck dense layer, the dense block that concatenates, the transition."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseLayer(nn.Module):
    """H_l of DenseNet-B: BN-ReLU-Conv(1x1, bn_size*k) then BN-ReLU-Conv(3x3, k); returns only the k new maps."""

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0):
        super().__init__()
        mid = bn_size * growth_rate  # Sec. 3 "Bottleneck layers": "let each 1x1 convolution produce 4k maps"
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))  # (N, k, H, W)
        if self.drop_rate > 0:
            out = F.dropout(out, self.drop_rate, self.training)
        return out


class DenseBlock(nn.Module):
    """x_l = H_l([x_0, x_1, ..., x_{l-1}]) (Eq. 2); the block outputs the concatenation of all of them.

    Layers are children `layer1`..`layerL`, numbered from 1 as in the paper's x_1..x_L.
    """

    def __init__(self, num_layers: int, in_ch: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0):
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_ch + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"layer{i + 1}", layer)
        self.out_channels = in_ch + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)  # (N, k_0 + L*k, H, W)


class Transition(nn.Sequential):
    """Between blocks: BN-ReLU-Conv(1x1) to floor(theta * m) maps (DenseNet-C compression), 2x2 average pool."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)
