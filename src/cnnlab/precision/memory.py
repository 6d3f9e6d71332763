"""A model's memory at a number format: the analyzer's fp32 report with each figure at the bytes it would take.

At the format: parameters, their gradients, and every activation (written, peak live, saved for backward), the
per-layer table's memory column too. Binary values are packed 8 to a byte; a fixed-point word takes whole bytes.
Kept fp32, as mixed-precision training keeps them (Micikevicius et al. 2017, Sec. 3.1): buffers (BatchNorm's
running statistics), the optimizer's state, and, for any format narrower than fp32, a master copy of the
trainable weights (`master_bytes`, part of the training estimate). Binary keeps the gradients fp32 too: in
BinaryConnect and BinaryNet only weights and activations are binary.
"""

from __future__ import annotations

import dataclasses
import math

from cnnlab.analysis.report import Report
from cnnlab.errors import CnnlabError
from cnnlab.precision.formats import Format, bytes_per_value, parse_format

FP32_BYTES = 4


def at_format(report: Report, fmt: str | Format) -> Report:
    """`report` (analysed in fp32) with its memory figures at `fmt`; fp32 gives the report unchanged."""
    fmt = parse_format(fmt)
    if report.dtype != "float32":
        raise CnnlabError(f"at_format needs an fp32 report, got one in {report.dtype}")
    if fmt.name == "fp32":
        return report
    per = bytes_per_value(fmt)

    def scale(nbytes: int) -> int:
        return math.ceil(nbytes / FP32_BYTES * per)

    binary = fmt.kind == "binary"
    note = (f"memory at {fmt.name}: params, {'' if binary else 'grads, '}activations; kept fp32: buffers, "
            f"{report.optimizer} state, master weights{', grads' if binary else ''}")  # fmt: skip
    rows = [dataclasses.replace(r, activation_bytes=scale(r.activation_bytes)) for r in report.rows]
    return dataclasses.replace(
        report,
        dtype=f"{fmt.name}, emulated",
        rows=rows,
        total_activation_bytes=scale(report.total_activation_bytes),
        peak_activation_bytes=scale(report.peak_activation_bytes),
        saved_bytes=scale(report.saved_activation_bytes),
        param_bytes=scale(report.param_bytes),
        grad_bytes=report.grad_bytes if binary else scale(report.grad_bytes),
        master_bytes=report.trainable_params * FP32_BYTES,
        memory_note=note,
    )
