"""Winograd's matrices in exact fractions, and the multiplications its element-wise stage really does."""

from __future__ import annotations

import random
from fractions import Fraction as Fr

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import convlab
from cnnlab.convlab import winograd

# Lavin & Gray 2015 (arXiv:1509.09308), Sec. 4.1 (F(2x2,3x3)) and 4.2 (F(4x4,3x3)), as printed.
h = Fr(1, 2)
LAVIN = {
    2: dict(
        B_t=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        G=[[1, 0, 0], [h, h, h], [h, -h, h], [0, 0, 1]],
        A_t=[[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: dict(
        B_t=[
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        G=[
            [Fr(1, 4), 0, 0],
            [Fr(-1, 6), Fr(-1, 6), Fr(-1, 6)],
            [Fr(-1, 6), Fr(1, 6), Fr(-1, 6)],
            [Fr(1, 24), Fr(1, 12), Fr(1, 6)],
            [Fr(1, 24), Fr(-1, 12), Fr(1, 6)],
            [0, 0, 1],
        ],
        A_t=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}


def _mv(a, v):
    return [sum(Fr(x) * y for x, y in zip(row, v)) for row in a]


def _winograd_1d(A_t, G, B_t, g, d):
    return _mv(A_t, [u * w for u, w in zip(_mv(G, g), _mv(B_t, d))])


def _correlate_1d(g, d, m):
    return [sum(Fr(g[i]) * d[j + i] for i in range(len(g))) for j in range(m)]


@pytest.mark.parametrize("tile", [2, 4, 6])
def test_cook_toom_matrices_are_exact_in_1d(tile):
    mats = convlab.cook_toom(tile)
    alpha = tile + 2
    assert len(mats.A_t) == tile and len(mats.G) == alpha and len(mats.B_t) == alpha
    assert all(isinstance(x, Fr) for row in mats.B_t for x in row)
    rng = random.Random(tile)
    for _ in range(20):
        g = [Fr(rng.randint(-9, 9), rng.randint(1, 5)) for _ in range(3)]
        d = [Fr(rng.randint(-9, 9), rng.randint(1, 5)) for _ in range(alpha)]
        assert _winograd_1d(mats.A_t, mats.G, mats.B_t, g, d) == _correlate_1d(g, d, tile)


@pytest.mark.parametrize("tile", [2, 4, 6])
def test_cook_toom_matrices_are_exact_in_2d(tile):
    """Y = A_t [(G g G_t) * (B_t d B)] A equals the 2-D correlation exactly (nested 1-D algorithm)."""
    mats = convlab.cook_toom(tile)
    alpha = tile + 2
    rng = random.Random(100 + tile)
    g = [[Fr(rng.randint(-5, 5), rng.randint(1, 3)) for _ in range(3)] for _ in range(3)]
    d = [[Fr(rng.randint(-5, 5), rng.randint(1, 3)) for _ in range(alpha)] for _ in range(alpha)]

    def mm(a, b):
        return [[sum(Fr(a[i][k]) * b[k][j] for k in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]

    def t(a):
        return [list(r) for r in zip(*a)]

    U = mm(mm(mats.G, g), t(mats.G))
    V = mm(mm(mats.B_t, d), t(mats.B_t))
    Y = mm(mm(mats.A_t, [[u * v for u, v in zip(ru, rv)] for ru, rv in zip(U, V)]), t(mats.A_t))
    expect = [
        [sum(g[a][b] * d[i + a][j + b] for a in range(3) for b in range(3)) for j in range(tile)] for i in range(tile)
    ]
    assert Y == expect


@pytest.mark.parametrize("tile", [2, 4])
def test_derived_matrices_equal_lavin_gray_per_interpolation_point(tile):
    """Our points and scaling differ from the paper's only by a sign per point: each point's rank-1 term
    A_t[:, j] (x) G[j, :] (x) B_t[j, :] is identical (and the paper's matrices are exact too)."""
    ours, theirs = convlab.cook_toom(tile), LAVIN[tile]
    alpha = tile + 2
    rng = random.Random(7)
    g = [Fr(rng.randint(-9, 9)) for _ in range(3)]
    d = [Fr(rng.randint(-9, 9)) for _ in range(alpha)]
    assert _winograd_1d(theirs["A_t"], theirs["G"], theirs["B_t"], g, d) == _correlate_1d(g, d, tile)

    def term(m, j):
        return [
            [[Fr(m["A_t"][i][j]) * m["G"][j][k] * m["B_t"][j][l] for l in range(alpha)] for k in range(3)]
            for i in range(tile)
        ]

    for j in range(alpha):
        assert term({"A_t": ours.A_t, "G": ours.G, "B_t": ours.B_t}, j) == term(theirs, j), f"point {j}"


def test_documented_interpolation_points():
    assert convlab.cook_toom(2).points == (0, 1, -1)
    assert convlab.cook_toom(4).points == (0, 1, -1, 2, -2)
    assert convlab.cook_toom(6).points == (0, 1, -1, 2, -2, Fr(1, 2), Fr(-1, 2))
    with pytest.raises(ValueError, match="distinct"):
        convlab.cook_toom(2, 3, (0, 1, 1))


@pytest.mark.parametrize(("tile", "reduction"), [(2, 2.25), (4, 4.0), (6, 5.0625)])
def test_elementwise_stage_multiplications(tile, reduction, monkeypatch):
    """Count what the element-wise stage really multiplies (FlopCounterMode on the real call inside
    conv2d_winograd) and compare with direct convolution's m^2 r^2 per output tile and channel pair."""
    counted = {}
    original = winograd.elementwise_stage

    def counting_stage(V, U):
        with FlopCounterMode(display=False) as fc:
            out = original(V, U)
        counted["multiplies"] = fc.get_total_flops() // 2  # a matmul's flops are 2 per multiply-add
        return out

    monkeypatch.setattr(winograd, "elementwise_stage", counting_stage)
    n, c, k, size = 2, 8, 12, 12  # 12 = a whole number of tiles for m = 2, 4, 6
    x, w = torch.randn(n, c, size + 2, size + 2), torch.randn(k, c, 3, 3)
    convlab.conv2d_winograd(x, w, tile=tile)
    tiles = n * (size // tile) ** 2
    alpha = tile + 2
    per_tile_pair = counted["multiplies"] / (tiles * c * k)
    assert per_tile_pair == alpha**2
    direct_per_tile_pair = tile**2 * 3**2
    assert direct_per_tile_pair / per_tile_pair == pytest.approx(reduction, abs=1e-3)
    # The direct count is the convolution's real MACs spread over the same tiles.
    assert direct_per_tile_pair * tiles * c * k == n * k * size * size * c * 9
