"""Every algorithm against F.conv2d (float64) and against a float64 reference in float32/float16."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from cnnlab import convlab

GENERAL = {"direct": convlab.conv2d_direct, "im2col": convlab.conv2d_im2col, "fft": convlab.conv2d_fft}
# The project's bounds on max|err| / max|ref| against a float64 reference on random inputs (the same table as
# cnnlab.convlab.bench.TOLERANCES); error grows with the Winograd tile, as Lavin & Gray 2015 (arXiv:1509.09308) note.
TOLERANCE = {
    torch.float32: {
        "direct": 1e-5,
        "im2col": 1e-5,
        "fft": 1e-5,
        "winograd2": 1e-5,
        "winograd4": 1e-4,
        "winograd6": 2e-4,
    },
    torch.float16: {
        "direct": 3e-3,
        "im2col": 3e-3,
        "fft": 3e-3,
        "winograd2": 3e-3,
        "winograd4": 3e-2,
        "winograd6": 5e-2,
    },
}

# (N, C, H, W), (K, kH, kW), stride, padding, dilation, groups
GRID = [
    ((2, 4, 9, 11), (6, 3, 3), 1, 1, 1, 1),
    ((1, 3, 7, 7), (5, 3, 3), 1, 0, 1, 1),  # batch 1, no padding
    ((2, 4, 13, 10), (4, 5, 3), 2, (2, 1), 1, 2),  # stride 2, asymmetric kernel, groups
    ((2, 6, 12, 12), (6, 3, 3), 1, 2, 2, 3),  # dilation
    ((1, 4, 11, 9), (8, 4, 2), (2, 3), 1, (2, 1), 1),
    ((2, 8, 10, 10), (8, 3, 3), 1, 1, 1, 8),  # depthwise
    ((2, 4, 10, 10), (8, 3, 3), 1, 1, 1, 4),  # depthwise, channel multiplier 2
    ((2, 3, 9, 8), (4, 4, 4), 1, "same", 1, 1),  # "same" with an even kernel: asymmetric padding
    ((2, 3, 9, 8), (4, 3, 3), 1, "same", (2, 1), 1),
    ((2, 3, 9, 8), (4, 3, 3), 1, "valid", 1, 1),
    ((1, 2, 5, 5), (3, 5, 5), 3, 2, 1, 1),
    ((1, 2, 23, 19), (2, 11, 7), 1, 3, 1, 1),  # large kernel
]


def _case(spec, dtype=torch.float64, bias=True):
    (n, c, h, w), (k, kh, kw), stride, padding, dilation, groups = spec
    x = torch.randn(n, c, h, w, dtype=dtype)
    wt = torch.randn(k, c // groups, kh, kw, dtype=dtype)
    b = torch.randn(k, dtype=dtype) if bias else None
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("name", sorted(GENERAL))
@pytest.mark.parametrize(
    "spec", GRID, ids=lambda s: "x".join(map(str, s[0])) + f"-k{s[1]}-s{s[2]}-p{s[3]}-d{s[4]}-g{s[5]}"
)
def test_general_algorithms_match_conv2d_float64(name, spec):
    x, wt, b, kw = _case(spec)
    ref = F.conv2d(x, wt, b, **kw)
    out = GENERAL[name](x, wt, b, **kw)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-12


WINO_GRID = [
    ((2, 4, 9, 11), 6, 1, 1),
    ((1, 3, 7, 7), 5, 0, 1),  # batch 1, output not a multiple of any tile
    ((2, 6, 13, 10), 6, (2, 0), 3),  # groups, asymmetric padding
    ((2, 8, 10, 10), 8, 1, 8),  # depthwise
    ((1, 2, 3, 3), 4, 0, 1),  # a single output pixel
    ((2, 3, 9, 8), 4, "same", 1),
    ((2, 4, 16, 16), 4, 3, 2),  # padding larger than the kernel radius
]


@pytest.mark.parametrize("tile", [2, 4, 6])
@pytest.mark.parametrize("spec", WINO_GRID, ids=lambda s: "x".join(map(str, s[0])) + f"-p{s[2]}-g{s[3]}")
def test_winograd_matches_conv2d_float64(tile, spec):
    (n, c, h, w), k, padding, groups = spec
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    wt = torch.randn(k, c // groups, 3, 3, dtype=torch.float64)
    b = torch.randn(k, dtype=torch.float64)
    ref = F.conv2d(x, wt, b, padding=padding, groups=groups)
    out = convlab.conv2d_winograd(x, wt, b, padding=padding, groups=groups, tile=tile)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-12


@pytest.mark.parametrize("name", ["direct", "im2col", "fft", "winograd2", "winograd4", "winograd6"])
def test_channels_last_and_unbatched(name):
    x = torch.randn(2, 8, 10, 9, dtype=torch.float64)
    wt = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    ref = F.conv2d(x, wt, padding=1, groups=2)
    xcl = x.contiguous(memory_format=torch.channels_last)
    out = convlab.conv2d(xcl, wt, padding=1, groups=2, algorithm=name)
    assert _rel(out, ref) < 1e-12
    assert out.is_contiguous(memory_format=torch.channels_last)  # as F.conv2d keeps the format
    single = convlab.conv2d(x[0], wt, padding=1, groups=2, algorithm=name)  # unbatched (C, H, W)
    assert single.shape == ref[0].shape and _rel(single, ref[0]) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("name", ["direct", "im2col", "fft", "winograd2", "winograd4", "winograd6"])
def test_low_precision_error_within_references(name, dtype):
    # Channel count as in a real layer: errors of the transforms add up over the contraction.
    x = torch.randn(2, 64, 20, 20).to(dtype)
    wt = (torch.randn(32, 64, 3, 3) / 24).to(dtype)
    # Reference in float64 from the same rounded inputs, so only the algorithm's error is measured.
    ref = F.conv2d(x.double(), wt.double(), padding=1)
    out = convlab.conv2d(x, wt, padding=1, algorithm=name)
    assert out.dtype == dtype
    err = _rel(out, ref)
    assert err < TOLERANCE[dtype][name], f"{name} {dtype}: {err:.2e}"


def test_bfloat16_winograd_warns_for_large_tiles():
    x = torch.randn(1, 16, 12, 12).bfloat16()
    wt = torch.randn(8, 16, 3, 3).bfloat16()
    with pytest.warns(convlab.WinogradPrecisionWarning, match="bfloat16"):
        convlab.conv2d_winograd(x, wt, padding=1, tile=4)
    with pytest.warns(convlab.WinogradPrecisionWarning):
        convlab.conv2d_winograd(x, wt, padding=1, tile=6)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convlab.conv2d_winograd(x, wt, padding=1, tile=2)  # F(2x2,3x3) is accurate enough: no warning


def test_grid_covers_the_issue_axes():
    """The grid above really contains every axis the issue asks for (guards against a trimmed grid)."""
    strides = {s[2] for s in GRID}
    assert any(s != 1 for s in strides)
    assert any(s[4] != 1 for s in GRID)  # dilation
    assert any(s[5] == s[0][1] for s in GRID)  # depthwise
    assert any(s[0][0] == 1 for s in GRID)  # batch 1
    assert any(s[0][2] % 2 and s[0][3] % 2 for s in GRID)  # odd sizes
    assert {"same", "valid"} <= {s[3] for s in GRID if isinstance(s[3], str)}
    assert list(itertools.chain(WINO_GRID))
