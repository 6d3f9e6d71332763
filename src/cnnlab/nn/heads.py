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
