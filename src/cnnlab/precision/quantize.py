"""`quantize(x, fmt, rounding)`: round a tensor to a number format, emulated in fp32 on any device.

Round-to-nearest is IEEE's (ties to even), so for fp16, bf16 and the fp8s it equals PyTorch's own cast bit for
bit (tests/precision check it over every value of those formats and the midpoints between them). Stochastic
rounding (Gupta et al. 2015, Eq. 4) rounds up with probability (x - floor(x)) / step: unbiased, and it only
ever returns one of the two neighbours of x. The arithmetic is a power-of-two rescaling and an integer
rounding, both exact in fp32, so the result is the format's value itself, held in an fp32 tensor.
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.precision.formats import Format, parse_format

ROUNDINGS = ("nearest", "stochastic")


def check_rounding(rounding: str) -> str:
    if rounding not in ROUNDINGS:
        raise UnknownNameError("rounding mode", rounding, ROUNDINGS)
    return rounding


def _round_int(q: torch.Tensor, stochastic: bool, generator: torch.Generator | None) -> torch.Tensor:
    """q rounded to an integer: to nearest, ties to even; or up with probability frac(q)."""
    if not stochastic:
        return torch.round(q)
    lo = torch.floor(q)
    u = torch.rand(q.shape, generator=generator, device=q.device, dtype=q.dtype)
    return lo + (u < q - lo).to(q.dtype)  # q - lo is exact; P(up) = frac(q) to within 2^-24


def _scale(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """x * 2^exponent, in two halves so that no factor leaves fp32's range (bf16's subnormals need 2^133)."""
    half = torch.div(exponent, 2, rounding_mode="floor")
    return torch.ldexp(torch.ldexp(x, half), exponent - half)


def _float(x: torch.Tensor, fmt: Format, stochastic: bool, generator: torch.Generator | None) -> torch.Tensor:
    a = x.abs()
    _, e = torch.frexp(a)  # a = m * 2^e with m in [0.5, 1), so floor(log2 a) = e - 1
    step_exp = (e - 1).clamp(min=fmt.emin) - fmt.mantissa  # below the normals, the subnormal step
    r = _scale(_round_int(_scale(a, -step_exp), stochastic, generator), step_exp)
    # float8_e4m3fn has no inf: PyTorch's cast saturates there (inf included), so this does too.
    overflow = torch.inf if fmt.has_inf else fmt.max
    r = torch.where((r > fmt.max) | torch.isinf(a), torch.full_like(r, overflow), r)
    return torch.copysign(r, x)  # keeps -0.0 and the sign of a value that underflows; NaN stays NaN


def _fixed(x: torch.Tensor, fmt: Format, stochastic: bool, generator: torch.Generator | None) -> torch.Tensor:
    scale = 2.0**fmt.fl
    lo, hi = fmt.min * scale, fmt.max * scale  # integers, exact in fp32 for words up to 24 bits
    q = (x * scale).clamp(lo, hi)  # saturate first: inf becomes the range's end, NaN stays NaN
    return _round_int(q, stochastic, generator) / scale


def _binary(x: torch.Tensor, stochastic: bool, generator: torch.Generator | None) -> torch.Tensor:
    """sign(x) with sign(0) = +1 (BinaryConnect Eq. 1); stochastic: +1 with probability hard_sigmoid(x) (Eq. 2-3)."""
    if stochastic:
        p = ((x + 1) / 2).clamp(0, 1)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        out = torch.where(u < p, 1.0, -1.0).to(x.dtype)
    else:
        out = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    return torch.where(torch.isnan(x), x, out)


def quantize(
    x: torch.Tensor,
    fmt: str | Format,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`x` rounded to `fmt` ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fixed<IL,FL>", "binary", "fp32"), as fp32.

    rounding: "nearest" (ties to even; binary: deterministic sign) or "stochastic" (draws from `generator`, on
    x's device). Fixed point saturates at its range; floats overflow to inf, except fp8_e4m3, which has none and
    saturates at +-448 as PyTorch's cast does.
    """
    fmt = parse_format(fmt)
    stochastic = check_rounding(rounding) == "stochastic"
    if not x.is_floating_point():
        raise CnnlabError(f"quantize needs a floating-point tensor, got {x.dtype}")
    x = x.float()
    if fmt.kind == "binary":
        return _binary(x, stochastic, generator)
    if fmt.kind == "fixed":
        return _fixed(x, fmt, stochastic, generator)
    if fmt.name == "fp32":
        return x
    return _float(x, fmt, stochastic, generator)


# The counters a rounding can raise, in this order (a tensor of these counts stays on the device).
EVENTS = ("nonzero", "flushed", "overflows", "saturations")


def quantize_counted(
    x: torch.Tensor, fmt: Format, rounding: str, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantize(x), counts): EVENTS counted over x's elements (int64, on x's device; no host sync).

    nonzero: x != 0; flushed: nonzero values that became zero (underflow); overflows: finite values that became
    inf or NaN; saturations: values clipped to the range's ends (fixed point, and fp8_e4m3; inf included).
    """
    y = quantize(x, fmt, rounding, generator)
    x = x.float()
    nonzero = x != 0
    flushed = nonzero & (y == 0)
    overflow = torch.isfinite(x) & ~torch.isfinite(y)
    if fmt.kind == "fixed" or (fmt.kind == "float" and not fmt.has_inf):
        saturated = (x > fmt.max) | (x < fmt.min)
    else:
        saturated = torch.zeros_like(nonzero)
    counts = torch.stack([m.sum() for m in (nonzero, flushed, overflow, saturated)])
    return y, counts
