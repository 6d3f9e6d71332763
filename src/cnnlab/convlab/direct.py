"""Direct convolution: the readable oracle that judges im2col, FFT and Winograd.

    out[n, k, y, x] = bias[k] + sum_{c in group(k)} sum_{i, j} in[n, c, y*s + i*d, x*s + j*d] * w[k, c, i, j]

It loops over the kH*kW kernel offsets; each offset contributes one strided slice of the padded input
times one weight column, contracted over the group's input channels. Slow for large kernels, obviously
right, and differentiable because it is built from slicing and einsum.
"""

from __future__ import annotations

import torch

from cnnlab.convlab import workspace
from cnnlab.convlab._common import ConvGeometry, IntOrPair, Padding, batched, check_args, finish, pad_input


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """The oracle accumulates half types in float32, so its own rounding does not hide other errors."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def direct_workspace_bytes(g: ConvGeometry, dtype: torch.dtype) -> int:
    """The padded input and the (N, K, Ho, Wo) accumulator, in the accumulation dtype."""
    ho, wo = g.out_hw
    acc = workspace.elem_bytes(accumulate_dtype(dtype))
    return workspace.padded_input_elems(g) * workspace.elem_bytes(dtype) + g.n * g.c_out * ho * wo * acc


workspace.register_formula("direct", direct_workspace_bytes)


def conv2d_direct(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """F.conv2d by its definition (same signature and result)."""
    geo = check_args(input, weight, bias, stride, padding, dilation, groups)
    workspace.guard("direct", geo, input.dtype)
    x, unbatched = batched(input)
    acc_dtype = accumulate_dtype(x.dtype)
    g, n = geo.groups, geo.n
    sh, sw = geo.stride
    dh, dw = geo.dilation
    ho, wo = geo.out_hw
    xp = pad_input(x, geo)
    if xp is not x:
        workspace.record("padded_input", xp)
    xg = xp.view(n, g, geo.c_in // g, *xp.shape[2:])  # (N, G, C/G, Hp, Wp)
    wg = weight.view(g, geo.c_out // g, geo.c_in // g, geo.kh, geo.kw)  # (G, K/G, C/G, kH, kW)
    out = torch.zeros(n, g, geo.c_out // g, ho, wo, dtype=acc_dtype, device=x.device)  # (N, G, K/G, Ho, Wo)
    workspace.record("accumulator", out)
    for i in range(geo.kh):
        for j in range(geo.kw):
            # The input pixels that kernel tap (i, j) sees, one per output position.
            patch = xg[:, :, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
            tap = wg[:, :, :, i, j]  # (G, K/G, C/G)
            out = out + torch.einsum("ngchw,gkc->ngkhw", patch.to(acc_dtype), tap.to(acc_dtype))
    out = out.reshape(n, geo.c_out, ho, wo).to(input.dtype)
    return finish(out, bias, input, unbatched)
