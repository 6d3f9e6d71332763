"""1-bit networks: BinaryConnect's binary weights (Courbariaux et al. 2015, arXiv:1511.00363) and BinaryNet's
binary activations (Hubara, Courbariaux et al. 2016, arXiv:1602.02830), applied to a model in place.

Binary weights are an emulated format (emulate.py; `emulate.binarize(model)` applies them): the forward and
backward passes use sign(w) (deterministic)
or +1 with probability hard_sigmoid(w) (stochastic), the gradient updates real-valued master weights through the
straight-through estimator, and the masters are clipped to [-1, 1]. Binary activations replace the model's
activation modules by sign(x), whose gradient is BinaryNet's straight-through estimator g * 1{|x| <= 1}.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError

# The activation modules a binary activation replaces (the zoo's nets use these; functional calls are not seen).
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Tanh, nn.Hardtanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU,
               nn.Hardswish)  # fmt: skip


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)  # BinaryNet Sec. 1.3: cancel the gradient where |x| > 1


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign(x) (sign(0) = +1) forward, g * 1{|x| <= 1} backward."""
    return _SignSTE.apply(x)


class BinaryActivation(nn.Module):
    """sign() with the straight-through estimator, in place of an activation module (which it names)."""

    def __init__(self, replaced: str = "") -> None:
        super().__init__()
        self.replaced = replaced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x)

    def extra_repr(self) -> str:
        return f"replaces={self.replaced}" if self.replaced else ""


def binarize_activations(model: nn.Module) -> int:
    """Replace every activation module of `model` (ACTIVATIONS) by BinaryActivation, in place; returns how many."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ACTIVATIONS):
                setattr(parent, name, BinaryActivation(type(child).__name__))
                swapped += 1
    if not swapped:
        raise CnnlabError(
            f"nothing to binarize: {type(model).__name__} has no activation modules "
            f"({', '.join(a.__name__ for a in ACTIVATIONS[:4])}, ...)"
        )
    return swapped
