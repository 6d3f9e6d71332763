"""Residual blocks, named as in the papers.

He et al. 2015, "Deep Residual Learning for Image Recognition" (arXiv:1512.03385): BasicBlock (Fig. 5 left),
Bottleneck (Fig. 5 right), shortcut options A (zero-padding identity) and B (projection when the shape
changes), Sec. 3.3. He et al. 2016, "Identity Mappings in Deep Residual Networks" (arXiv:1603.05027):
PreActBlock and PreActBottleneck, the full pre-activation unit of Fig. 4(e). ResNeXt (arXiv:1611.05431)
is the Bottleneck with a grouped 3x3 conv (Fig. 3c); SE-ResNet (arXiv:1709.01507) puts a SqueezeExcite on
the residual branch before the addition (Fig. 3).

Every block takes `shortcut` = "A" | "B" | "none"; "none" builds the plain net of the same depth (no addition
at all, Sec. 4.1 "Plain Networks"). Identity shortcuts (same shape) are parameter-free in options A and B.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.nn.se import SqueezeExcite

ShortcutKind = Literal["A", "B", "none"]
StrideOn = Literal["1x1", "3x3"]


class PadShortcut(nn.Module):
    """Option A: identity with stride-`stride` subsampling and zero channels appended; no parameters.

    Sec. 3.3: "the shortcut still performs identity mapping, with extra zero entries padded for increasing
    dimensions ... performed with a stride of 2" (used for the CIFAR nets, Sec. 4.2).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"option A cannot reduce channels ({in_ch} -> {out_ch}); use shortcut='B'")
        self.extra = out_ch - in_ch
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # a 1x1 stride-s "conv" with weight 1
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (N, C_in + extra, H', W')


class Projection(nn.Sequential):
    """Option B: a 1x1 convolution (+ BN in post-activation nets) where the shape changes, Eq. 2's W_s."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
        if norm:
            self.bn = nn.BatchNorm2d(out_ch)


def make_shortcut(kind: ShortcutKind, in_ch: int, out_ch: int, stride: int, norm: bool) -> nn.Module | None:
    """The shortcut branch: None for a plain net, Identity when the shape is kept, else option A or B."""
    if kind == "none":
        return None
    if in_ch == out_ch and stride == 1:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(in_ch, out_ch, stride)
    if kind == "B":
        return Projection(in_ch, out_ch, stride, norm)
    raise ValueError(f"unknown shortcut option {kind!r}; expected 'A', 'B' or 'none'")


def _se(channels: int, se_reduction: int | None) -> nn.Module:
    return SqueezeExcite(channels, se_reduction) if se_reduction else nn.Identity()


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride, 1, groups=groups, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Fig. 5 (left): 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        shortcut: ShortcutKind = "B",
        se_reduction: int | None = None,
    ):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = _se(out_ch, se_reduction)
        self.shortcut = make_shortcut(shortcut, in_ch, out_ch, stride, norm=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))  # F(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # F(x) + x
        return self.relu(out)


class Bottleneck(nn.Module):
    """Fig. 5 (right): 1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand to 4x, + shortcut, ReLU.

    `stride_on="1x1"` puts the downsampling stride on the first 1x1 conv as in the paper ("v1", and Caffe's
    released models); "3x3" puts it on the 3x3 conv as torchvision and timm do ("v1.5"): same parameters,
    about 6% more multiply-adds, a little more accurate, since the 1x1 no longer discards 3 of 4 pixels.
    """

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        out_ch: int,
        stride: int = 1,
        shortcut: ShortcutKind = "B",
        groups: int = 1,
        se_reduction: int | None = None,
        stride_on: StrideOn = "3x3",
    ):
        super().__init__()
        s1, s3 = _split_stride(stride, stride_on)
        self.conv1 = _conv1x1(in_ch, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, s3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.se = _se(out_ch, se_reduction)
        self.shortcut = make_shortcut(shortcut, in_ch, out_ch, stride, norm=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))  # F(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class PreActBlock(nn.Module):
    """He 2016, Fig. 4(e) with two 3x3 convs: BN-ReLU-conv, BN-ReLU-conv, + shortcut; nothing after the add.

    A projection shortcut reads the pre-activated input (BN-ReLU of x), as in the authors' code, so that the
    first unit of a stage does not add an unnormalised signal; identity and option-A shortcuts read x itself,
    keeping the clean identity path that is the point of the paper.
    """

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        shortcut: ShortcutKind = "B",
        se_reduction: int | None = None,
    ):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv3x3(in_ch, out_ch, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.se = _se(out_ch, se_reduction)
        # The next unit's BN normalises the sum, so a projection here needs no BN of its own.
        self.shortcut = make_shortcut(shortcut, in_ch, out_ch, stride, norm=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.se(self.conv2(self.relu(self.bn2(out))))
        return _add_preact_shortcut(out, self.shortcut, x, pre)


class PreActBottleneck(nn.Module):
    """He 2016, Fig. 4(e) with the bottleneck: BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1, + shortcut."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        out_ch: int,
        stride: int = 1,
        shortcut: ShortcutKind = "B",
        groups: int = 1,
        se_reduction: int | None = None,
        stride_on: StrideOn = "3x3",
    ):
        super().__init__()
        s1, s3 = _split_stride(stride, stride_on)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv1x1(in_ch, width, s1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, s3, groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_ch)
        self.se = _se(out_ch, se_reduction)
        self.shortcut = make_shortcut(shortcut, in_ch, out_ch, stride, norm=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.se(self.conv3(self.relu(self.bn3(out))))
        return _add_preact_shortcut(out, self.shortcut, x, pre)


def _add_preact_shortcut(
    out: torch.Tensor, shortcut: nn.Module | None, x: torch.Tensor, pre: torch.Tensor
) -> torch.Tensor:
    if shortcut is None:
        return out
    if isinstance(shortcut, Projection):
        return out + shortcut(pre)
    return out + shortcut(x)


def _split_stride(stride: int, stride_on: StrideOn) -> tuple[int, int]:
    """(stride of the first 1x1, stride of the 3x3) for a bottleneck."""
    if stride_on == "1x1":
        return stride, 1
    if stride_on == "3x3":
        return 1, stride
    raise ValueError(f"unknown stride_on {stride_on!r}; expected '1x1' (paper v1) or '3x3' (torchvision v1.5)")
