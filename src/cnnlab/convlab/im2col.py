"""im2col: copy every receptive field into a column, then one matrix multiply per group.

    cols = unfold(pad(x))                    # (N, C*kH*kW, L), L = Ho*Wo output positions
    out  = W.view(G, K/G, C/G*kH*kW) @ cols  # (N, G, K/G, L)

The price is the column buffer: each input pixel is copied up to kH*kW times (fewer at stride > 1).
`column_bytes` reports it without running the convolution.
"""

from __future__ import annotations

import torch

from cnnlab.convlab import workspace
from cnnlab.convlab._common import (
    ConvGeometry,
    IntOrPair,
    Padding,
    batched,
    check_args,
    finish,
    geometry,
    pad_input,
)

# DEVIATION: the textbook im2col builds one buffer for the whole batch. Like Caffe (one image at a time) we
# build it for as many samples as fit in this budget and loop: the buffer stays small enough for the
# allocator to reuse it (a fresh 100 MB buffer per call costs page faults that made im2col ~1.5x slower on
# CPU), and the guard then limits the input, not the batch. With autograd on, each chunk's columns are
# kept for backward, so training holds N/chunk of them.
COLUMN_BUDGET_BYTES = 16 * 1024**2


def samples_per_chunk(per_sample_bytes: int, n: int) -> int:
    """How many samples' columns are built at once (at least one)."""
    return max(1, min(n, COLUMN_BUDGET_BYTES // max(per_sample_bytes, 1)))


def column_bytes(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    dtype: torch.dtype = torch.float32,
) -> int:
    """Bytes of im2col's column buffer (n, C*kH*kW, Ho*Wo), n = the samples per chunk (see above)."""
    return _columns_bytes(geometry(input_shape, weight_shape, stride, padding, dilation, groups), dtype)


def _columns_bytes(g: ConvGeometry, dtype: torch.dtype) -> int:
    ho, wo = g.out_hw
    per_sample = g.c_in * g.kh * g.kw * ho * wo * workspace.elem_bytes(dtype)
    return samples_per_chunk(per_sample, g.n) * per_sample


def im2col_workspace_bytes(g: ConvGeometry, dtype: torch.dtype) -> int:
    """The padded input and one chunk's column buffer (reused across chunks)."""
    return workspace.padded_input_elems(g) * workspace.elem_bytes(dtype) + _columns_bytes(g, dtype)


workspace.register_formula("im2col", im2col_workspace_bytes)


def conv2d_im2col(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """F.conv2d as unfold + batched matmul (same signature and result)."""
    geo = check_args(input, weight, bias, stride, padding, dilation, groups)
    workspace.guard("im2col", geo, input.dtype)
    x, unbatched = batched(input)
    g, n = geo.groups, geo.n
    ho, wo = geo.out_hw
    xp = pad_input(x, geo)
    if xp is not x:
        workspace.record("padded_input", xp)
    per_sample = geo.c_in * geo.kh * geo.kw * ho * wo
    chunk = samples_per_chunk(per_sample * x.element_size(), n)
    wmat = weight.reshape(g, geo.c_out // g, -1)  # (G, K/G, C/G*kH*kW)
    ekh, ekw = geo.eff_kernel
    outs = []
    for start in range(0, n, chunk):
        part = xp[start : start + chunk]
        # The receptive fields as a view (no copy yet): windows of the dilated extent at the stride, then
        # every d-th pixel of each window. The reshape copies them into the column buffer; this is faster
        # on CPU than F.unfold's im2col kernel and handles asymmetric ("same") padding alike.
        windows = part.unfold(2, ekh, geo.stride[0]).unfold(3, ekw, geo.stride[1])  # (n, C, Ho, Wo, ekH, ekW)
        windows = windows[..., :: geo.dilation[0], :: geo.dilation[1]]  # (n, C, Ho, Wo, kH, kW)
        cols = windows.permute(0, 1, 4, 5, 2, 3).reshape(part.shape[0], -1, ho * wo)  # (n, C*kH*kW, L)
        workspace.record("columns", cols)
        cols = cols.view(part.shape[0], g, -1, ho * wo)  # (n, G, C/G*kH*kW, L)
        outs.append(torch.matmul(wmat, cols))  # (n, G, K/G, L)
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    out = out.view(n, geo.c_out, ho, wo)
    return finish(out, bias, input, unbatched)
