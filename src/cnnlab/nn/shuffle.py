"""Channel shuffle and the ShuffleNet V2 unit (Ma et al. 2018, arXiv:1807.11164, Fig. 3(c) and 3(d))."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.nn.conv import ConvBNAct


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups (Zhang et al. 2017, Fig. 1(c)): reshape, transpose, flatten.

    Channel `g * (C // groups) + i` moves to position `i * groups + g`; the result is a permutation.
    """
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels do not split into {groups} groups")
    # (N, g, C/g, H, W) -> (N, C/g, g, H, W) -> (N, C, H, W)
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleV2Block(nn.Module):
    """The ShuffleNet V2 unit.

    Stride 1 (Fig. 3c): channel split in two halves; one passes untouched, the other goes through
    1x1 conv-BN-ReLU, 3x3 depthwise conv-BN, 1x1 conv-BN-ReLU; concat, then channel shuffle.
    Stride 2 (Fig. 3d): no split; both branches see the whole input and each halves the resolution
    (branch1: 3x3 depthwise conv-BN, 1x1 conv-BN-ReLU), so the output channels double.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        if out_ch % 2:
            raise ValueError(f"ShuffleV2Block: out_ch must be even, got {out_ch}")
        half = out_ch // 2
        if stride == 1 and in_ch != out_ch:
            raise ValueError(f"ShuffleV2Block: a stride-1 unit keeps its width, got {in_ch} -> {out_ch}")
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential()
            self.branch1.dw = ConvBNAct(in_ch, in_ch, 3, stride, groups=in_ch, act=None)
            self.branch1.pw = ConvBNAct(in_ch, half, 1)
        branch_in = in_ch if stride > 1 else half
        self.branch2 = nn.Sequential()
        self.branch2.pw1 = ConvBNAct(branch_in, half, 1)
        # No ReLU after the depthwise conv, as in the paper's figure (and Xception's observation).
        self.branch2.dw = ConvBNAct(half, half, 3, stride, groups=half, act=None)
        self.branch2.pw2 = ConvBNAct(half, half, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, x2 = x.chunk(2, dim=1)
            out = torch.cat((keep, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)
