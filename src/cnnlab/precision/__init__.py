"""The numerical-precision lab: number formats, rounding, and training under an emulated format (docs/precision.md).

- formats: fp32, fp16, bf16, fp8 (e4m3, e5m2), fixed point <IL, FL>, binary; range, step, smallest values.
- quantize(x, fmt, rounding): round any tensor to a format, emulated in fp32 (nearest equals PyTorch's casts).
- emulate(model, emulation): train with rounded weights, activations, gradients and updates (the recipe's
  `emulate` table does this for `cnnlab train`), with counters of lost updates, flushed gradients, overflows.
- binarize(model): BinaryConnect weights; binarize_activations(model): BinaryNet's sign activations.
"""

from __future__ import annotations

from cnnlab.precision.binary import binarize_activations, sign_ste
from cnnlab.precision.config import Emulation, parse_emulation
from cnnlab.precision.emulate import COUNTERS, Emulator, binarize, emulate, emulator_of
from cnnlab.precision.formats import FLOATS, Format, bytes_per_value, fixed, fixed_in_word, parse_format
from cnnlab.precision.quantize import ROUNDINGS, quantize, quantize_counted

__all__ = [
    "COUNTERS",
    "FLOATS",
    "ROUNDINGS",
    "Emulation",
    "Emulator",
    "Format",
    "binarize",
    "binarize_activations",
    "bytes_per_value",
    "emulate",
    "emulator_of",
    "fixed",
    "fixed_in_word",
    "parse_emulation",
    "parse_format",
    "quantize",
    "quantize_counted",
    "sign_ste",
]
