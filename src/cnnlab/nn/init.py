"""He initialization (He et al. 2015, "Delving deep into rectifiers"), the one most families here share.

Convolutions: N(0, 2 / fan_out) weights and zero biases; BatchNorm: scale 1, shift 0. Linear layers differ by
family (the papers' reference code), so the caller passes how to draw them, or nothing to leave them be.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def normal_linear(std: float = 0.01) -> Callable[[nn.Linear], None]:
    """Linear weights from N(0, std^2), zero biases (AlexNet, VGG, MobileNet, ShuffleNet reference code)."""

    def init(m: nn.Linear) -> None:
        nn.init.normal_(m.weight, 0.0, std)
        nn.init.zeros_(m.bias)

    return init


def he_init(model: nn.Module, linear: Callable[[nn.Linear], None] | None = None) -> None:
    """Initialise every Conv2d and BatchNorm2d of `model` (and Linear with `linear`), in module order."""
    if any(p.is_meta for p in model.parameters()):
        return  # meta tensors hold no values; normal_ on meta goes through slow decompositions (~10 ms each)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear is not None:
            linear(m)
