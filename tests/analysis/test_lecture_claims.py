"""The lectures' arithmetic claims (VGG's stacked 3x3s, Inception's 1x1 reduction, ResNeXt's block cost, MobileNet's
depthwise separable cost), each checked by analysing a small module."""

from __future__ import annotations

import pytest
from torch import nn

from cnnlab.analysis import analyze


def test_three_3x3_versus_one_7x7():
    c = 16
    three = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(3)])
    one = nn.Conv2d(c, c, 7, padding=3, bias=False)
    r3, r1 = analyze(three, (c, 32, 32)), analyze(one, (c, 32, 32))
    assert r3.total_params == 27 * c * c
    assert r1.total_params == 49 * c * c
    assert r3.receptive_field == r1.receptive_field == 7


def test_inception_1x1_reduction():
    direct = nn.Conv2d(192, 32, 5, padding=2, bias=False)
    reduced = nn.Sequential(nn.Conv2d(192, 16, 1, bias=False), nn.Conv2d(16, 32, 5, padding=2, bias=False))
    size = (192, 28, 28)
    assert round(analyze(direct, size).total_macs / 1e6, 1) == 120.4
    rows = analyze(reduced, size).layers()
    assert [round(r.macs / 1e6, 1) for r in rows] == [2.4, 10.0]
    assert round(sum(r.macs for r in rows) / 1e6, 1) == 12.4


class _ResNeXtBottleneck(nn.Module):
    """4C -> G groups of width c (1x1) -> grouped 3x3 -> 4C (1x1), the three layers of ResNeXt's Fig. 3(c)."""

    def __init__(self, C: int, G: int, c: int):
        super().__init__()
        self.reduce = nn.Conv2d(4 * C, G * c, 1, bias=False)
        self.conv = nn.Conv2d(G * c, G * c, 3, padding=1, groups=G, bias=False)
        self.expand = nn.Conv2d(G * c, 4 * C, 1, bias=False)

    def forward(self, x):
        return self.expand(self.conv(self.reduce(x)))


@pytest.mark.parametrize(("G", "c"), [(1, 64), (4, 24), (32, 4)])
def test_resnext_bottleneck_cost(G, c):
    C, H, W = 64, 14, 14
    rep = analyze(_ResNeXtBottleneck(C, G, c), (4 * C, H, W))
    assert rep.total_macs == (8 * C * c + 9 * c * c) * H * W * G
    assert abs(rep.total_macs / (H * W) - 70_000) / 70_000 < 0.05  # "about 70k x H x W"


def test_depthwise_separable_cost():
    DK, M, N, DF = 3, 32, 64, 56
    separable = nn.Sequential(nn.Conv2d(M, M, DK, padding=1, groups=M, bias=False), nn.Conv2d(M, N, 1, bias=False))
    standard = nn.Conv2d(M, N, DK, padding=1, bias=False)
    dw, pw = analyze(separable, (M, DF, DF)).layers()
    assert dw.macs == DK * DK * M * DF * DF
    assert pw.macs == M * N * DF * DF
    assert analyze(standard, (M, DF, DF)).total_macs == DK * DK * M * N * DF * DF
