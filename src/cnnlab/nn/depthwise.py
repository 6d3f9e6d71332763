"""Depthwise separable convolution (Howard et al. 2017, "MobileNets", Sec. 3.1 and Fig. 3)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cnnlab.nn.conv import ConvBNAct


class DepthwiseSeparable(nn.Sequential):
    """Fig. 3 (right): a k x k depthwise conv-BN-ReLU (one filter per input channel, `groups == in_ch`), then a
    1x1 pointwise conv-BN-ReLU that mixes channels.

    Cost (Sec. 3.1): D_K^2 * M * D_F^2 + M * N * D_F^2 multiply-adds instead of D_K^2 * M * N * D_F^2.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        kernel_size: int = 3,
        act: Callable[[], nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.dw = ConvBNAct(in_ch, in_ch, kernel_size, stride, groups=in_ch, act=act)
        self.pw = ConvBNAct(in_ch, out_ch, 1, act=act)


def separable_macs(kernel: int, in_ch: int, out_ch: int, out_size: int) -> tuple[int, int]:
    """(depthwise separable, standard) multiply-adds of one layer with a D_F x D_F output (Sec. 3.1)."""
    d_k, m, n, d_f = kernel, in_ch, out_ch, out_size
    return d_k * d_k * m * d_f * d_f + m * n * d_f * d_f, d_k * d_k * m * n * d_f * d_f
