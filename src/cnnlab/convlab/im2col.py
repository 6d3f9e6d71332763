"""im2col: copy every receptive field into a column, then one matrix multiply per group.

    cols = unfold(x)                         # (N, C*kH*kW, L), L = Ho*Wo output positions
    out  = W.view(G, K/G, C/G*kH*kW) @ cols  # (N, G, K/G, L)

The price is the column buffer: each input pixel is copied up to kH*kW times (fewer at stride > 1).
`column_bytes` reports it without running the convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.convlab import workspace
from cnnlab.convlab._common import IntOrPair, Padding, batched, check_args, finish, geometry


def column_bytes(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    dtype: torch.dtype = torch.float32,
) -> int:
    """Bytes of im2col's column buffer (N, C*kH*kW, Ho*Wo) for these arguments."""
    geo = geometry(input_shape, weight_shape, stride, padding, dilation, groups)
    ho, wo = geo.out_hw
    return geo.n * geo.c_in * geo.kh * geo.kw * ho * wo * torch.empty((), dtype=dtype).element_size()


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
    sym = geo.symmetric_pad
    if sym is None:  # "same" with an even kernel: unfold pads symmetrically only, so pad explicitly first
        t, b, left, r = geo.pad
        x = F.pad(x, (left, r, t, b))
        workspace.record("padded_input", x)
        sym = (0, 0)
    cols = F.unfold(x, (geo.kh, geo.kw), dilation=geo.dilation, padding=sym, stride=geo.stride)
    workspace.record("columns", cols)  # (N, C*kH*kW, L)
    cols = cols.view(n, g, (geo.c_in // g) * geo.kh * geo.kw, ho * wo)  # (N, G, C/G*kH*kW, L)
    wmat = weight.reshape(g, geo.c_out // g, -1)  # (G, K/G, C/G*kH*kW)
    out = torch.matmul(wmat, cols)  # (N, G, K/G, L)
    out = out.view(n, geo.c_out, ho, wo)
    return finish(out, bias, input, unbatched)
