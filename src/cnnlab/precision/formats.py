"""Number formats a tensor can be rounded to: IEEE-style floats, fixed point <IL, FL> and binary (sign).

A float format is (mantissa bits, smallest normal exponent, largest finite value, whether it has infinities);
its values are emulated in fp32, which holds every one of them exactly (bf16 and the fp8s share or sit inside
fp32's exponent range; fp16's and fp8's subnormals are fp32 normals). Fixed point <IL, FL> is Gupta et al.'s
(arXiv:1502.02551): IL integer bits including the sign and FL fraction bits, step 2^-FL, saturating at
[-2^(IL-1), 2^(IL-1) - 2^-FL].
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from cnnlab.errors import CnnlabError, UnknownNameError

# fp32 holds a fixed-point word exactly only while the word fits its 24-bit significand.
MAX_FIXED_WORD = 24


@dataclass(frozen=True)
class Format:
    """One number format. `kind` is "float", "fixed" or "binary"; the other fields say what applies to it."""

    name: str
    kind: str
    bits: int  # storage bits per value
    mantissa: int = 0  # float: explicit mantissa bits
    emin: int = 0  # float: exponent of the smallest normal value
    max: float = 0.0  # the largest finite value (fixed: the top of the range)
    has_inf: bool = False  # float: overflow rounds to inf (else it saturates at max, as torch's e4m3fn cast)
    il: int = 0  # fixed: integer bits, sign included
    fl: int = 0  # fixed: fraction bits
    dtype: torch.dtype | None = None  # the PyTorch dtype with these values, where there is one

    @property
    def min(self) -> float:
        """The most negative finite value."""
        if self.kind == "fixed":
            return -(2.0 ** (self.il - 1))
        return -1.0 if self.kind == "binary" else -self.max

    @property
    def step(self) -> float:
        """The spacing of values: fixed point's 2^-FL, or a float's spacing just above 1.0 (machine epsilon)."""
        if self.kind == "fixed":
            return 2.0**-self.fl
        return 2.0 if self.kind == "binary" else 2.0**-self.mantissa

    @property
    def smallest_normal(self) -> float | None:
        return 2.0**self.emin if self.kind == "float" else None

    @property
    def smallest_subnormal(self) -> float | None:
        """The smallest positive value (fixed point: its step; binary has none)."""
        if self.kind == "float":
            return 2.0 ** (self.emin - self.mantissa)
        return self.step if self.kind == "fixed" else None

    def describe(self) -> dict[str, object]:
        return {
            "format": self.name,
            "bits": self.bits,
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "smallest_normal": self.smallest_normal,
            "smallest_subnormal": self.smallest_subnormal,
        }


def _float(name: str, bits: int, mantissa: int, emin: int, max_: float, has_inf: bool, dtype_name: str) -> Format:
    return Format(name, "float", bits, mantissa, emin, max_, has_inf, dtype=getattr(torch, dtype_name, None))


FLOATS = {
    "fp32": _float("fp32", 32, 23, -126, float(torch.finfo(torch.float32).max), True, "float32"),
    "fp16": _float("fp16", 16, 10, -14, 65504.0, True, "float16"),
    "bf16": _float("bf16", 16, 7, -126, (2 - 2**-7) * 2.0**127, True, "bfloat16"),
    "fp8_e4m3": _float("fp8_e4m3", 8, 3, -6, 448.0, False, "float8_e4m3fn"),
    "fp8_e5m2": _float("fp8_e5m2", 8, 2, -14, 57344.0, True, "float8_e5m2"),
}
BINARY = Format("binary", "binary", 1, max=1.0)
NAMES = (*FLOATS, "fixed<IL,FL>", "binary")
_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "e4m3": "fp8_e4m3",
            "e5m2": "fp8_e5m2", "fp8": "fp8_e4m3", "sign": "binary"}  # fmt: skip


def fixed(il: int, fl: int) -> Format:
    """Fixed point <IL, FL>: IL integer bits (sign included), FL fraction bits; a word of IL + FL bits."""
    if il < 1:
        raise CnnlabError(f"fixed<{il},{fl}>: IL counts the sign bit, so it must be at least 1")
    if fl < 0:
        raise CnnlabError(f"fixed<{il},{fl}>: FL must be >= 0")
    if il + fl > MAX_FIXED_WORD:
        raise CnnlabError(
            f"fixed<{il},{fl}>: a {il + fl}-bit word; at most {MAX_FIXED_WORD} bits are emulated exactly in fp32"
        )
    return Format(f"fixed<{il},{fl}>", "fixed", il + fl, max=2.0 ** (il - 1) - 2.0**-fl, il=il, fl=fl)


def fixed_in_word(word: int, fl: int) -> Format:
    """A `word`-bit fixed-point format with FL fraction bits (Gupta et al. fix the word at 16 and vary FL)."""
    if not 0 <= fl < word:
        raise CnnlabError(f"FL={fl} is outside a {word}-bit word: FL must be 0..{word - 1} (one bit is the sign)")
    return fixed(word - fl, fl)


_FIXED = re.compile(r"(?:fixed|q)\s*[<(:]?\s*(\d+)\s*[,.]\s*(\d+)\s*[>)]?")


def parse_format(spec: str | Format) -> Format:
    """A format by name: fp32, fp16, bf16, fp8_e4m3, fp8_e5m2, binary, or fixed<IL,FL> (also fixed:IL,FL)."""
    if isinstance(spec, Format):
        return spec
    name = str(spec).strip().lower()
    name = _ALIASES.get(name, name)
    if name in FLOATS:
        return FLOATS[name]
    if name == "binary":
        return BINARY
    m = _FIXED.fullmatch(name)
    if m:
        return fixed(int(m.group(1)), int(m.group(2)))
    if name.startswith(("fixed", "q")):
        raise CnnlabError(f"format '{spec}': write fixed point as fixed<IL,FL>, e.g. fixed<4,12> (or fixed:4,12)")
    raise UnknownNameError("number format", str(spec), NAMES)


def bytes_per_value(fmt: Format) -> float:
    """Storage per value in bytes (binary: one bit; a fixed-point word rounded up to whole bytes, as stored)."""
    if fmt.kind == "binary":
        return 1 / 8
    return float(math.ceil(fmt.bits / 8))
