"""Classifier heads. Every head exposes `num_classes` and `reset(num_classes)`, which replaces its final
layer (`fc`) with a freshly initialised one of the same kind."""

from __future__ import annotations

import torch
from torch import nn


class Head(nn.Module):
    """Base: subclasses own a final layer `self.fc` (nn.Linear, or a 1x1 nn.Conv2d for all-conv heads)."""

    fc: nn.Module

    @property
    def num_classes(self) -> int:
        return self.fc.out_features if isinstance(self.fc, nn.Linear) else self.fc.out_channels

    def reset(self, num_classes: int) -> None:
        old = self.fc
        if isinstance(old, nn.Linear):
            new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        elif isinstance(old, nn.Conv2d):
            new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding)
        else:  # pragma: no cover - a family bug, not user input
            raise TypeError(f"cannot reset a head whose final layer is {type(old).__name__}")
        self.fc = new.to(device=old.weight.device, dtype=old.weight.dtype)


class PoolLinearHead(Head):
    """Global average pool -> flatten -> dropout -> Linear: the head of most post-2014 networks."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.flatten(self.pool(x))))


class FCHead(Head):
    """pool5 map -> flatten -> fc6, fc7 (Linear-ReLU, with dropout) -> fc: the head of AlexNet, ZFNet and VGG.

    `hidden` is one flat Sequential (Linear, ReLU, Dropout or Dropout, Linear, ReLU per layer), so its indices
    line up with torchvision's `classifier`.
    """

    def __init__(
        self,
        in_ch: int,
        map_size: int,
        fc: tuple[int, ...],
        num_classes: int,
        dropout: float,
        dropout_first: bool = False,
        adaptive_pool: bool = True,
    ):
        super().__init__()
        self.map_size = map_size
        # DEVIATION (where enabled): the papers' fc6 reads a fixed pool5 map; torchvision average-pools to it.
        self.pool = nn.AdaptiveAvgPool2d(map_size) if adaptive_pool else nn.Identity()
        self.flatten = nn.Flatten(1)
        layers: list[nn.Module] = []
        n = in_ch * map_size * map_size
        for width in fc:
            block = [_linear(n, width), nn.ReLU(inplace=True)]
            layers += [nn.Dropout(dropout), *block] if dropout_first else [*block, nn.Dropout(dropout)]
            n = width
        self.hidden = nn.Sequential(*layers)
        self.fc = _linear(n, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        if tuple(x.shape[-2:]) != (self.map_size, self.map_size):
            raise ValueError(
                f"fc6 reads {self.map_size}x{self.map_size} feature maps, got {x.shape[-2]}x{x.shape[-1]}: use "
                "the input size the network was built for, or build it with adaptive_pool=True"
            )
        return self.fc(self.hidden(self.flatten(x)))


def _linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear with weights N(0, 0.01) and zero biases (AlexNet Sec. 5, VGG Sec. 3.1).

    Built uninitialised first: fc6 has up to 10^8 weights, and drawing them twice (PyTorch's default init, then
    ours) doubles the cost of building the model.
    """
    device = torch.empty(0).device  # the default device, honouring `with torch.device(...)` (meta in model_info)
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features, device=device)
    nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)
    return layer
