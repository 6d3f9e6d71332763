"""Inverted residual blocks: MobileNetV2's (Sandler et al. 2018, Fig. 3b and Table 1) and EfficientNet's MBConv
(Tan & Le 2019, which adds squeeze-and-excitation and stochastic depth), plus the channel rounding both use."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.se import SqueezeExcite


def round_channels(channels: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Nearest multiple of `divisor` (at least `min_value`, default `divisor`), never more than 10% below.

    The channel rounding of the MobileNet / EfficientNet reference code: widths that are multiples of 8 map
    well onto hardware, and the 10% guard keeps a width multiplier from removing too much capacity.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def stochastic_depth(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Drop whole samples of a residual branch with probability `p` (Huang et al. 2016, arXiv:1603.09382).

    Each sample's branch output is kept with probability 1 - p and then scaled by 1 / (1 - p), so that its
    expectation is unchanged and evaluation (identity) needs no rescaling.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"stochastic depth probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    # p == 1 drops every sample; avoid 0 / 0 and keep x in the graph so that its parameters still get a gradient.
    return x * mask / keep if keep > 0 else x * mask


class StochasticDepth(nn.Module):
    """`stochastic_depth` as a module: active in training mode only, the identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stochastic depth probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class InvertedResidual(nn.Module):
    """MobileNetV2's bottleneck (Sandler et al. 2018, Table 1): 1x1 expand by t (ReLU6), 3x3 depthwise with the
    stride (ReLU6), 1x1 linear projection (no activation: the "linear bottleneck"); identity shortcut when the
    shape is kept. With t == 1 the expansion conv is omitted (it would be a square 1x1 conv)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: float):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_shortcut = stride == 1 and in_ch == out_ch
        # Identity when there is no expansion: it holds no parameters, so state_dict keys are unaffected.
        self.expand = ConvBNAct(in_ch, hidden, 1, act=nn.ReLU6) if expand_ratio != 1 else nn.Identity()
        self.dw = ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)
        self.project = ConvBNAct(hidden, out_ch, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.dw(self.expand(x)))
        return x + out if self.use_shortcut else out


class MBConv(nn.Module):
    """EfficientNet's mobile inverted bottleneck: 1x1 expand (SiLU), k x k depthwise (SiLU), squeeze-and-excite,
    1x1 linear projection; the shortcut branch is randomly dropped per sample in training (stochastic depth).

    The SE bottleneck width is `se_ratio` times the block's *input* channels (not the expanded ones), as in the
    reference implementation.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        se_ratio: float = 0.25,
        drop_path: float = 0.0,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
        divisor: int = 8,
    ):
        super().__init__()
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        hidden = round_channels(in_ch * expand_ratio, divisor)
        self.use_shortcut = stride == 1 and in_ch == out_ch
        self.expand = ConvBNAct(in_ch, hidden, 1, act=nn.SiLU, **bn) if hidden != in_ch else nn.Identity()
        self.dw = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, act=nn.SiLU, **bn)
        self.se = SqueezeExcite(hidden, squeeze_channels=max(1, int(in_ch * se_ratio)), act=nn.SiLU, act_name="act")
        self.project = ConvBNAct(hidden, out_ch, 1, act=None, **bn)
        self.drop_path = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return x + self.drop_path(out) if self.use_shortcut else out
