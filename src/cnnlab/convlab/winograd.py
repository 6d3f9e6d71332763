"""Winograd minimal filtering F(m x m, 3 x 3) (Lavin & Gray 2015, arXiv:1509.09308).

One output tile Y (m x m) from one input tile d (alpha x alpha, alpha = m + r - 1) and a 3x3 filter g:

    Y = A_t [ (G g G_t) (.) (B_t d B) ] A          (.) = element-wise product

Across channels the element-wise stage becomes alpha^2 independent matrix multiplies
(tiles x C) @ (C x K): that is where the multiplications are saved. Per output tile and channel pair it
does alpha^2 multiplies where direct convolution does m^2 r^2: F(2,3) 16 vs 36 (2.25x), F(4,3) 36 vs 144
(4x), F(6,3) 64 vs 324 (5.06x). The transforms cost additions and multiplies by constants, amortised
over K output (input transform) or C input (output transform) channels.

The matrices are derived here, in exact fractions, by the Cook-Toom construction rather than copied:

* Linear convolution of g (r taps) with d (m taps) is the product of two polynomials, of degree
  alpha - 1. Evaluate both at alpha points p_0..p_{alpha-2} and infinity (the leading coefficient),
  multiply the alpha values, interpolate back:  y = V^-1 [ (V_r g) (.) (V_m d) ], where V_k[j] =
  (1, p_j, ..., p_j^{k-1}) and the row of infinity picks the last coefficient.
* Correlation (what a CNN computes) is the transpose of that linear map (the transposition principle):
  o = V_m^T [ (V_r g) (.) (V^-T d) ], so A_t = V_m^T, G = V_r, B_t = V^-T.
* Each point's term may be rescaled freely (A_t column a, G row b, B_t row c with a b c = 1). As Lavin &
  Gray do, we divide G's row j by f_j = prod_{l != j} (p_j - p_l), which makes B_t the integer-ish
  coefficients of prod_{l != j} (x - p_l) and keeps the data transform cheap.

Interpolation points (the usual choice, small magnitudes to keep float error low; Lavin & Gray's F(2,3) and
F(4,3) use the same):  F(2,3): 0, 1, -1, inf.  F(4,3): 0, 1, -1, 2, -2, inf.
F(6,3): 0, 1, -1, 2, -2, 1/2, -1/2, inf.

Precision: the transforms grow the values (F(6,3)'s B_t has entries up to 21/4 and A_t up to 2^5 = 32), so
error grows with the tile. float32 and float16 compute in their own dtype (float16 meets convlab.bench.TOLERANCES,
3e-3 / 3e-2 / 5e-2). bfloat16 has 8 bits of mantissa: F(2,3) is fine, but F(4,3) and F(6,3) are off by
several percent, so they compute in bfloat16 as asked and emit a WinogradPrecisionWarning (warn rather than
refuse: the CLI's check table shows the size of the error, which is the lesson).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, partial

import torch

from cnnlab.convlab import workspace
from cnnlab.convlab._common import (
    ConvArgumentError,
    ConvGeometry,
    IntOrPair,
    Padding,
    batched,
    check_args,
    finish,
    is_channels_last,
)

R = 3  # filter size: the only one supported
TILES = (2, 4, 6)
POINTS: dict[int, tuple[Fraction, ...]] = {
    2: tuple(map(Fraction, (0, 1, -1))),
    4: tuple(map(Fraction, (0, 1, -1, 2, -2))),
    6: tuple(map(Fraction, (0, 1, -1, 2, -2))) + (Fraction(1, 2), Fraction(-1, 2)),
}

Matrix = tuple[tuple[Fraction, ...], ...]


class WinogradPrecisionWarning(UserWarning):
    """bfloat16 with a large Winograd tile: expect errors of several percent."""


@dataclass(frozen=True)
class WinogradMatrices:
    m: int
    r: int
    points: tuple[Fraction, ...]  # the finite points; infinity is always the last
    A_t: Matrix  # (m, alpha)
    G: Matrix  # (alpha, r)
    B_t: Matrix  # (alpha, alpha)

    @property
    def alpha(self) -> int:
        return self.m + self.r - 1


def _eval_matrix(points: tuple[Fraction, ...], k: int) -> list[list[Fraction]]:
    """Rows (1, p, ..., p^{k-1}) for each finite point, then infinity's row picking the top coefficient."""
    rows = [[p**e for e in range(k)] for p in points]
    rows.append([Fraction(0)] * (k - 1) + [Fraction(1)])
    return rows


def _inverse(a: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact Gauss-Jordan inverse."""
    n = len(a)
    aug = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        pv = aug[col][col]
        aug[col] = [v / pv for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [v - f * w for v, w in zip(aug[r], aug[col])]
    return [row[n:] for row in aug]


def _t(a: list[list[Fraction]]) -> list[list[Fraction]]:
    return [list(col) for col in zip(*a)]


@cache
def cook_toom(m: int, r: int = R, points: tuple[Fraction, ...] | None = None) -> WinogradMatrices:
    """A_t, G, B_t of F(m, r) from `points` (alpha - 1 distinct finite points; infinity is added)."""
    alpha = m + r - 1
    pts = POINTS[m] if points is None else tuple(Fraction(p) for p in points)
    if len(pts) != alpha - 1 or len(set(pts)) != len(pts):
        raise ConvArgumentError(f"F({m},{r}) needs {alpha - 1} distinct finite points, got {pts}")
    v_m, v_r, v = _eval_matrix(pts, m), _eval_matrix(pts, r), _eval_matrix(pts, alpha)
    a_t = _t(v_m)  # (m, alpha)
    b_t = _t(_inverse(v))  # (alpha, alpha)
    g = [row[:] for row in v_r]  # (alpha, r)
    for j, p in enumerate(pts):  # Lavin & Gray's scaling: 1/f_j moves from B_t into G
        f = Fraction(1)
        for q in pts:
            if q != p:
                f *= p - q
        g[j] = [x / f for x in g[j]]
        b_t[j] = [x * f for x in b_t[j]]
    as_tuple = lambda a: tuple(tuple(row) for row in a)  # noqa: E731
    return WinogradMatrices(m, r, pts, as_tuple(a_t), as_tuple(g), as_tuple(b_t))


_TENSOR_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _kron(a: Matrix, b: Matrix) -> list[list[Fraction]]:
    return [[x * y for x in ra for y in rb] for ra in a for rb in b]


def matrices(tile: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A_t, G (x) G, B_t) as tensors, rounded once from the exact fractions (via float64).

    The data transforms are applied separably (two GEMMs with a tiny inner dimension alpha, memory-bound
    and cheap); the filter transform uses the Kronecker product, taken in exact fractions, so that
    U = (G (x) G) vec(g) is a single GEMM over all K*C filters."""
    key = (tile, dtype, str(device))
    if key not in _TENSOR_CACHE:
        mats = cook_toom(tile)
        to = lambda a: torch.tensor([[float(x) for x in row] for row in a], dtype=torch.float64)  # noqa: E731
        exact = (mats.A_t, _kron(mats.G, mats.G), mats.B_t)
        _TENSOR_CACHE[key] = tuple(to(k).to(device=device, dtype=dtype) for k in exact)
    return _TENSOR_CACHE[key]


def check_supported(geo: ConvGeometry, tile: int) -> None:
    """Raise ConvArgumentError naming every unsupported part of the configuration."""
    problems = []
    if tile not in TILES:
        problems.append(f"tile={tile!r} (supported: 2, 4, 6)")
    if (geo.kh, geo.kw) != (R, R):
        problems.append(f"kernel {geo.kh}x{geo.kw} (only 3x3)")
    if geo.stride != (1, 1):
        problems.append(f"stride {geo.stride} (only 1)")
    if geo.dilation != (1, 1):
        problems.append(f"dilation {geo.dilation} (only 1)")
    if problems:
        raise ConvArgumentError("Winograd F(m x m, 3 x 3) does not support " + ", ".join(problems))


def tile_counts(geo: ConvGeometry, tile: int) -> tuple[int, int]:
    """Tiles along H and W covering the output."""
    ho, wo = geo.out_hw
    return -(-ho // tile), -(-wo // tile)


def padded_channels_last(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """(N, C, H, W) -> zero-padded (N, Hp, Wp, C), channels innermost; pad = (top, bottom, left, right).

    Why channels last: the tile gather below and the stitching in `output_transform` then copy runs of C
    contiguous values. Straight from and to NCHW they copy runs of one value: at C=128 on 14x14 the gather
    took 3x as long and the stitching 1.6x, a fifth of the call (benchmarks/winograd_stages.py, part 2)."""
    t, b, left, r = pad
    n, c, h, w = x.shape
    xp = x.new_empty(n, h + t + b, w + left + r, c)
    # Zero only the border; the interior is overwritten by the (transposing) copy.
    xp[:, :t].zero_()
    xp[:, h + t :].zero_()
    xp[:, t : h + t, :left].zero_()
    xp[:, t : h + t, w + left :].zero_()
    xp[:, t : h + t, left : w + left].copy_(x.permute(0, 2, 3, 1))
    return xp


def input_transform(xp: torch.Tensor, B_t: torch.Tensor, tile: int, groups: int) -> torch.Tensor:
    """V = B_t d B for every tile: (N, Hp, Wp, C) padded input -> (alpha^2, G, T, C/G), T = N*nH*nW."""
    alpha = B_t.shape[0]
    a2 = alpha * alpha
    c = xp.shape[3]
    d = xp.unfold(1, alpha, tile).unfold(2, alpha, tile)  # (N, nH, nW, C, alpha, alpha), a view
    d = d.unflatten(3, (groups, c // groups))  # (N, nH, nW, G, C/G, alpha, alpha)
    # Gather the tiles with the tile position first and channels last: the layout the GEMMs want.
    tiles = d.permute(5, 6, 3, 0, 1, 2, 4).contiguous().view(a2, -1)  # (alpha^2, G*N*nH*nW*C/G)
    workspace.record("tiles", tiles)
    half = torch.matmul(B_t, tiles.view(alpha, -1))  # rows: (alpha_p, alpha_j * G*T*C/G)
    workspace.record("tiles_half_transformed", half)
    v = torch.matmul(B_t, half.view(alpha, alpha, -1))  # columns, batched over p: (alpha_p, alpha_q, G*T*C/G)
    return v.view(a2, groups, -1, c // groups)


# The element-wise matmuls read U's (C/G, K/G) slices. Stored as a transposed view, BLAS (MKL on this
# x86 CPU) reads them 15-18% slower than a contiguous matrix from 192x192 floats on, 0-16% at 128x128
# (T=64 tiles; benchmarks/winograd_stages.py, part 3). Reordering the filters first costs a copy of the
# weight: about what it saves at 192x192, less from 256x256 (256 KiB) on, where we start.
REORDER_FILTERS_BYTES = 256 * 1024


def weight_transform(weight: torch.Tensor, GG: torch.Tensor, groups: int) -> torch.Tensor:
    """U = G g G_t: (K, C/G, 3, 3) -> (alpha^2, G, C/G, K/G). GG = G (x) G, (alpha^2, 9)."""
    k, cg = weight.shape[:2]
    kg = k // groups
    if cg * kg * weight.element_size() < REORDER_FILTERS_BYTES:
        u = torch.matmul(GG, weight.reshape(k * cg, R * R).t())  # (alpha^2, K*C/G)
        return u.view(GG.shape[0], groups, kg, cg).transpose(2, 3)  # a view; matmul reads it transposed
    w = weight.reshape(groups, kg, cg, R * R).transpose(1, 2).contiguous()  # (G, C/G, K/G, 9)
    workspace.record("filters_reordered", w)
    u = torch.matmul(GG, w.view(-1, R * R).t())  # (alpha^2, G*C/G*K/G)
    return u.view(GG.shape[0], groups, cg, kg)


def transform_filters(weight: torch.Tensor, tile: int = 4, groups: int = 1) -> torch.Tensor:
    """U = G g G_t for every filter, (alpha^2, G, C/G, K/G): compute it once and pass it to
    conv2d_winograd(..., transformed_weight=U) to skip the filter transform at inference. It holds
    (alpha/3)^2 times the weight's numbers (4x for F(4x4,3x3)), and at 14x14 with 256 channels producing it
    is about a quarter of a call (benchmarks/winograd_stages.py)."""
    if tile not in TILES:
        raise ConvArgumentError(f"Winograd does not support tile={tile!r} (supported: 2, 4, 6)")
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (R, R):
        raise ConvArgumentError(f"Winograd filters must be (K, C/groups, 3, 3), got {tuple(weight.shape)}")
    if groups < 1 or weight.shape[0] % groups:
        raise ConvArgumentError(f"out_channels {weight.shape[0]} is not divisible by groups={groups}")
    _, GG, _ = matrices(tile, weight.dtype, weight.device)
    return weight_transform(weight, GG, groups)


def _checked_transformed(
    u: torch.Tensor, weight: torch.Tensor, tile: int, groups: int, x: torch.Tensor
) -> torch.Tensor:
    k, cg = weight.shape[:2]
    want = ((tile + R - 1) ** 2, groups, cg, k // groups)
    if tuple(u.shape) != want:
        raise ConvArgumentError(
            f"transformed_weight has shape {tuple(u.shape)}; F({tile}x{tile},3x3) with weight "
            f"{tuple(weight.shape)} and groups={groups} needs {want} (see transform_filters)"
        )
    if u.dtype != x.dtype or u.device != x.device:
        raise ConvArgumentError(
            f"transformed_weight is {u.dtype} on {u.device} but the input is {x.dtype} on {x.device}"
        )
    return u


def elementwise_stage(V: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """The multiplications Winograd saves: alpha^2 x G matmuls (T, C/G) @ (C/G, K/G) -> (alpha^2, G, T, K/G)."""
    return torch.matmul(V, U)


def output_transform(M: torch.Tensor, A_t: torch.Tensor, n: int, n_h: int, n_w: int) -> torch.Tensor:
    """Y = A_t M A per tile, tiles stitched: (alpha^2, G, T, K/G) -> (N, nH*m, nW*m, K), channels last."""
    m, alpha = A_t.shape
    g, kg = M.shape[1], M.shape[3]
    half = torch.matmul(A_t, M.reshape(alpha, -1))  # rows: (m_i, alpha_q * G*T*K/G)
    workspace.record("output_half_transformed", half)
    y = torch.matmul(A_t, half.view(m, alpha, -1))  # columns, batched over i: (m_i, m_j, G*T*K/G)
    workspace.record("output_tiles_transformed", y)
    y = y.view(m, m, g, n, n_h, n_w, kg).permute(3, 4, 0, 5, 1, 2, 6)  # (N, nH, m, nW, m, G, K/G)
    return y.reshape(n, n_h * m, n_w * m, g * kg)


def conv2d_winograd(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    tile: int = 4,
    *,
    transformed_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """F.conv2d for 3x3, stride 1, dilation 1 (any padding, groups) by Winograd F(tile x tile, 3 x 3).

    `transformed_weight`: U = transform_filters(weight, tile, groups), computed once for inference. The
    caller promises it was made from this `weight`; gradients do not flow through it to `weight`."""
    geo = check_args(input, weight, bias, stride, padding, dilation, groups)
    check_supported(geo, tile)
    if input.dtype == torch.bfloat16 and tile >= 4:
        warnings.warn(
            f"Winograd F({tile}x{tile},3x3) in bfloat16 loses several percent of accuracy; "
            "use tile=2, float16/float32, or another algorithm",
            WinogradPrecisionWarning,
            stacklevel=2,
        )
    workspace.guard(f"winograd{tile}", geo, input.dtype)
    x, unbatched = batched(input)
    A_t, GG, B_t = matrices(tile, x.dtype, x.device)
    ho, wo = geo.out_hw
    n_h, n_w = tile_counts(geo, tile)
    t, b, left, r = geo.pad
    # Pad the bottom/right up to whole tiles; the extra outputs are cropped at the end.
    xp = padded_channels_last(x, (t, b + n_h * tile - ho, left, r + n_w * tile - wo))
    workspace.record("padded_input", xp)
    V = input_transform(xp, B_t, tile, geo.groups)
    workspace.record("V", V)
    if transformed_weight is None:
        U = weight_transform(weight, GG, geo.groups)
    else:
        U = _checked_transformed(transformed_weight, weight, tile, geo.groups, x)
    workspace.record("U", U)
    M = elementwise_stage(V, U)
    workspace.record("M", M)
    y = output_transform(M, A_t, geo.n, n_h, n_w)
    workspace.record("output_tiles", y)
    out = y[:, :ho, :wo].permute(0, 3, 1, 2)  # NCHW view of channels-last data
    if not is_channels_last(input):  # else `finish` keeps it channels-last (copying only if cropped), as F.conv2d
        out = out.contiguous()
    return finish(out, bias, input, unbatched)


def winograd_workspace_bytes(g: ConvGeometry, dtype: torch.dtype, tile: int) -> int:
    """The buffers conv2d_winograd records: padded input, the tiles through the input transform (V), U (and the
    reordered filters when large), M, and the output tiles through the output transform and stitching."""
    e = workspace.elem_bytes(dtype)
    m, alpha = tile, tile + R - 1
    n, c, k, cg = g.n, g.c_in, g.c_out, g.c_in // g.groups
    n_h, n_w = tile_counts(g, m)
    tiles = n * n_h * n_w
    padded_tiles = n * c * (n_h * m + R - 1) * (n_w * m + R - 1)  # padded up to whole tiles
    # input tiles gathered, after the row transform, after the column transform (V)
    data = 3 * alpha**2 * tiles * c
    # read at call time, so that a test may move the threshold (as weight_transform reads it)
    reordered = R * R * k * cg if cg * (k // g.groups) * e >= REORDER_FILTERS_BYTES else 0
    filters = alpha**2 * k * cg + reordered  # U, and the filters reordered for it when large
    products = alpha**2 * tiles * k  # M
    # M after the row transform, after the column transform, then stitched into an image
    outputs = m * alpha * tiles * k + 2 * m * m * tiles * k
    return (padded_tiles + data + filters + products + outputs) * e


for _tile in TILES:
    workspace.register_formula(f"winograd{_tile}", partial(winograd_workspace_bytes, tile=_tile))
