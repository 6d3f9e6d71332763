"""Convolution + normalization + activation, the unit most families are built from."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the spatial size at stride 1 for an odd kernel."""
    return dilation * (kernel_size - 1) // 2


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias when followed by BN) -> BatchNorm2d -> activation; `norm=False` drops BN and keeps bias.

    Children are named `conv`, `bn`, `act` so that state_dict keys read like the paper.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm: bool = True,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        if padding is None:
            if isinstance(kernel_size, tuple):
                padding = tuple(same_padding(k, dilation) for k in kernel_size)
            else:
                padding = same_padding(kernel_size, dilation)
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation, groups, bias=not norm)
        if norm:
            self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum)
        if act is not None:
            self.act = act() if not _is_inplace_relu(act) else nn.ReLU(inplace=True)


def _is_inplace_relu(act: Callable[[], nn.Module]) -> bool:
    return act is nn.ReLU
