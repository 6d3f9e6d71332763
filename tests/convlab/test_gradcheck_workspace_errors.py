"""Gradients, workspace formulas against the real buffers, the workspace guard, and bad input."""

from __future__ import annotations

import pytest
import torch

from cnnlab import convlab
from cnnlab.convlab import workspace

ALL = ["direct", "im2col", "fft", "winograd2", "winograd4", "winograd6"]


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name):
    winograd = name.startswith("winograd")
    x = torch.randn(2, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    kw = dict(padding=1, groups=2) if winograd else dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    # fast_mode checks the Jacobian along random directions: a full check of every entry is ~50x slower.
    assert torch.autograd.gradcheck(
        lambda x, w, b: convlab.conv2d(x, w, b, algorithm=name, **kw), (x, w, b), fast_mode=True
    )


CASES = [
    ((2, 6, 11, 13), (4, 3, 3, 3), dict(padding=1, groups=2)),
    ((3, 4, 9, 9), (5, 4, 2, 4), dict(padding="same")),
    ((2, 4, 12, 10), (6, 2, 3, 3), dict(stride=2, padding=(1, 2), dilation=2, groups=2)),
    ((2, 4, 12, 10), (6, 4, 3, 3), dict()),
    ((2, 8, 14, 14), (8, 1, 3, 3), dict(padding=1, groups=8)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("name", ALL)
def test_workspace_formula_equals_allocated_buffers(name, dtype):
    checked = 0
    for xs, ws, kw in CASES:
        x, w = torch.randn(xs).to(dtype), torch.randn(ws).to(dtype)
        if name.startswith("winograd") and (ws[2:] != (3, 3) or kw.get("stride", 1) != 1 or kw.get("dilation", 1) != 1):
            continue
        with workspace.capture() as buffers:
            convlab.conv2d(x, w, algorithm=name, **kw)
        assert buffers, "the implementation recorded nothing"
        assert workspace.peak_bytes(buffers) == convlab.workspace_bytes(name, xs, ws, dtype=dtype, **kw), buffers
        checked += 1
    assert checked >= 3


def test_im2col_reports_its_column_buffer(monkeypatch):
    xs, ws = (5, 6, 11, 13), (4, 3, 3, 3)
    with workspace.capture() as buffers:
        convlab.conv2d_im2col(torch.randn(xs), torch.randn(ws), padding=1, groups=2)
    assert dict(buffers)["columns"] == convlab.column_bytes(xs, ws, padding=1, groups=2) == 5 * 6 * 9 * 11 * 13 * 4
    # A budget of two samples' columns: three chunks (2 + 2 + 1), the buffer is two samples' worth.
    from cnnlab.convlab import im2col

    monkeypatch.setattr(im2col, "COLUMN_BUDGET_BYTES", 2 * 6 * 9 * 11 * 13 * 4)
    x, w = torch.randn(xs, dtype=torch.float64), torch.randn(ws, dtype=torch.float64)
    with workspace.capture() as buffers:
        out = convlab.conv2d_im2col(x.float(), w.float(), padding=1, groups=2)
    assert [b for name, b in buffers if name == "columns"] == [2 * 6 * 9 * 11 * 13 * 4] * 2 + [6 * 9 * 11 * 13 * 4]
    assert convlab.column_bytes(xs, ws, padding=1, groups=2) == 2 * 6 * 9 * 11 * 13 * 4
    ref = torch.nn.functional.conv2d(x, w, padding=1, groups=2)
    assert ((out.double() - ref).abs().max() / ref.abs().max()) < 1e-5


def test_guard_refuses_large_workspace_with_a_message():
    x, w = torch.randn(1, 8, 16, 16), torch.randn(8, 8, 3, 3)
    need = convlab.workspace_bytes("im2col", x.shape, w.shape, padding=1)
    with convlab.workspace_limit(need - 1), pytest.raises(convlab.WorkspaceLimitError, match="im2col.*limit"):
        convlab.conv2d_im2col(x, w, padding=1)
    with convlab.workspace_limit(need):
        convlab.conv2d_im2col(x, w, padding=1)
    assert convlab.get_workspace_limit() == 2 * 1024**3  # restored default
    # The default 2 GiB refuses, before allocating anything, Winograd on a batch whose tiles need ~15 GiB.
    big = torch.empty(128, 64, 112, 112, device="meta")
    with pytest.raises(convlab.WorkspaceLimitError, match="GiB"):
        convlab.conv2d_winograd(big, torch.empty(64, 64, 3, 3, device="meta"), padding=1)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kw", "match"),
    [
        ((4, 8, 8), (4, 4, 3, 3), {}, None),  # 3-D input is unbatched (C, H, W): fine
        ((2, 4, 8, 8, 1), (4, 4, 3, 3), {}, "input must be 4-D"),
        ((2, 4, 8, 8), (4, 4, 3), {}, "weight must be 4-D"),
        ((2, 6, 8, 8), (4, 4, 3, 3), {}, "weight expects 4 input channels"),
        ((2, 6, 8, 8), (4, 3, 3, 3), {"groups": 4}, "not divisible by groups"),
        ((2, 4, 8, 8), (6, 1, 3, 3), {"groups": 4}, "output channels \\(6\\) are not divisible"),
        ((2, 4, 8, 8), (4, 4, 3, 3), {"stride": 0}, "stride must be positive"),
        ((2, 4, 8, 8), (4, 4, 3, 3), {"padding": "full"}, "padding must be"),
        ((2, 4, 8, 8), (4, 4, 3, 3), {"padding": "same", "stride": 2}, "strided"),
        ((2, 4, 4, 4), (4, 4, 7, 7), {}, "larger than the padded input"),
    ],
)
@pytest.mark.parametrize("name", ["direct", "im2col", "fft", "winograd4"])
def test_bad_shapes_name_the_cause(name, x_shape, w_shape, kw, match):
    x, w = torch.randn(x_shape), torch.randn(w_shape)
    if match is None:
        if len(w_shape) == 4 and w_shape[2:] == (3, 3):
            convlab.conv2d(x, w, algorithm=name, **kw)
        return
    with pytest.raises(ValueError, match=match):
        convlab.conv2d(x, w, algorithm=name, **kw)


def test_bad_tensors_name_the_cause():
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    with pytest.raises(ValueError, match="dtypes differ"):
        convlab.conv2d_im2col(x, w.double())
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        convlab.conv2d_fft(x, w, torch.randn(3))
    with pytest.raises(ValueError, match="floating-point"):
        convlab.conv2d_direct(x.long(), w.long())


@pytest.mark.parametrize(
    ("w_shape", "kw", "match"),
    [
        ((4, 4, 5, 5), {}, "kernel 5x5"),
        ((4, 4, 3, 3), {"stride": 2}, "stride"),
        ((4, 4, 3, 3), {"dilation": 2}, "dilation"),
        ((4, 4, 1, 3), {"stride": 2}, "kernel 1x3.*stride"),
        ((4, 4, 3, 3), {"tile": 3}, "tile=3"),
    ],
)
def test_unsupported_winograd_is_refused_never_wrong(w_shape, kw, match):
    with pytest.raises(ValueError, match="Winograd.*does not support.*" + match):
        convlab.conv2d_winograd(torch.randn(1, 4, 12, 12), torch.randn(w_shape), **kw)


def test_unknown_algorithm_suggests_names():
    with pytest.raises(KeyError, match="did you mean winograd4"):
        convlab.conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), algorithm="winograd_4")
    with pytest.raises(KeyError, match="unknown convolution algorithm"):
        convlab.workspace_bytes("gemm", (1, 1, 5, 5), (1, 1, 3, 3))
