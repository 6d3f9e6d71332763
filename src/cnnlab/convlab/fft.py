"""FFT convolution: multiply in the frequency domain, contracting channels per frequency.

Cross-correlation (what conv2d computes) is pointwise X * conj(W) in the frequency domain. With the
transform size at least the padded input size (Hp, Wp), the circular correlation equals the linear one on
every valid output position (i + j <= Hp - 1 never wraps), so no extra padding is needed; sizes are rounded
up to 2-3-5-7-smooth lengths, which pocketfft/cuFFT handle fast. Stride keeps every s-th output of the
stride-1 result (wasteful, but exact); dilation spreads the kernel with zeros before its transform.

Per frequency f, out[n, g, k] = sum_c X[n, g, c] * conj(W[g, k, c]) is a complex matmul, batched over
frequencies and groups: (F, G, N, C/G) @ (F, G, C/G, K/G). The cost no longer depends on the kernel size,
which is why FFT wins for large kernels.

float16/bfloat16 are transformed in float32 (torch.fft has no half-precision CPU kernels, and cuFFT's
float16 path wants power-of-two sizes); the result is rounded back to the input dtype.
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
    fast_len,
    finish,
    pad_input,
)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def fft_workspace_bytes(g: ConvGeometry, dtype: torch.dtype) -> int:
    """Upcast copies (half types), padded input, dilated weight, the spectra and the full stride-1 output."""
    e, ce = workspace.elem_bytes(dtype), workspace.elem_bytes(compute_dtype(dtype))
    n, c, k, cg = g.n, g.c_in, g.c_out, g.c_in // g.groups
    hp, wp = g.padded_hw
    upcast = (n * c * g.h * g.w + k * cg * g.kh * g.kw) * ce if ce != e else 0
    ekh, ekw = g.eff_kernel
    dilated = k * cg * ekh * ekw if g.dilation != (1, 1) else 0
    hf, wf = fast_len(hp), fast_len(wp)
    bins = hf * (wf // 2 + 1)
    # input and weight spectra, each also permuted for the matmul; output spectrum, permuted back
    spectra_complex = 2 * (n * c * bins) + 2 * (k * cg * bins) + 2 * (n * k * bins)
    return upcast + (workspace.padded_input_elems(g) + dilated + n * k * hf * wf) * ce + spectra_complex * 2 * ce


workspace.register_formula("fft", fft_workspace_bytes)


def conv2d_fft(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """F.conv2d via torch.fft (same signature and result)."""
    geo = check_args(input, weight, bias, stride, padding, dilation, groups)
    workspace.guard("fft", geo, input.dtype)
    x, unbatched = batched(input)
    n, g = geo.n, geo.groups
    cg, kg = geo.c_in // g, geo.c_out // g
    cdt = compute_dtype(x.dtype)
    if cdt != x.dtype:
        x, weight = x.to(cdt), weight.to(cdt)
        workspace.record("upcast_input", x)
        workspace.record("upcast_weight", weight)
    xp = pad_input(x, geo)
    if xp is not x:
        workspace.record("padded_input", xp)
    hp, wp = geo.padded_hw
    hf, wf = fast_len(hp), fast_len(wp)
    dh, dw = geo.dilation
    if (dh, dw) != (1, 1):
        ekh, ekw = geo.eff_kernel
        wd = weight.new_zeros(geo.c_out, cg, ekh, ekw)
        wd[:, :, ::dh, ::dw] = weight  # differentiable: autograd records the slice copy
        workspace.record("dilated_weight", wd)
        weight = wd
    xf = torch.fft.rfft2(xp, s=(hf, wf))  # (N, C, Hf, Wf/2+1) complex
    wfreq = torch.fft.rfft2(weight, s=(hf, wf)).conj()  # (K, C/G, Hf, Wf/2+1): conj makes it correlation
    workspace.record("input_spectrum", xf)
    workspace.record("weight_spectrum", wfreq)
    nf = hf * (wf // 2 + 1)
    xm = xf.reshape(n, g, cg, nf).permute(3, 1, 0, 2).contiguous()  # (F, G, N, C/G)
    wm = wfreq.reshape(g, kg, cg, nf).permute(3, 0, 2, 1).contiguous()  # (F, G, C/G, K/G)
    workspace.record("input_spectrum_fgnc", xm)
    workspace.record("weight_spectrum_fgck", wm)
    ym = torch.matmul(xm, wm)  # (F, G, N, K/G)
    workspace.record("output_spectrum_fgnk", ym)
    yf = ym.permute(2, 1, 3, 0).reshape(n, geo.c_out, hf, wf // 2 + 1)  # (N, K, Hf, Wf/2+1)
    workspace.record("output_spectrum", yf)
    y = torch.fft.irfft2(yf, s=(hf, wf))  # (N, K, Hf, Wf)
    workspace.record("output_full", y)
    ho, wo = geo.out_hw
    sh, sw = geo.stride
    out = y[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw].to(input.dtype).contiguous()
    return finish(out, bias, input, unbatched)
