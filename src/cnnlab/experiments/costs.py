"""Exact costs of one block from the analyzer, for the cost claims (weights, MACs, receptive field, shape).

The papers' formulas count conv weights and conv multiply-adds only (49C^2, D_K^2 M N D_F^2), so these sums
leave out BatchNorm's scale and shift; the receptive field and output shape are the whole block's.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def conv_cost(block: nn.Module, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Conv weights and MACs, receptive field (pixels) and output shape of `block` on one (C, H, W) input."""
    import cnnlab

    rep = cnnlab.analyze(block, tuple(shape))
    convs = [r for r in rep.rows if r.leaf and r.kind == "Conv2d"]
    return {
        "weights": sum(r.params for r in convs),
        "macs": sum(r.macs for r in convs),
        "receptive_field": rep.receptive_field,
        "output_shape": list(rep.rows[0].output_shape[1:]),
    }


def table(rows: dict[str, dict[str, Any]], shape: tuple[int, int, int]) -> list[str]:
    """Markdown rows of conv_cost results, one per block, for the report's analysis section."""
    c, h, w = shape
    out = [
        f"One block on a {c} x {h} x {w} input (conv weights and conv MACs; BatchNorm excluded):",
        "",
        "| block | conv weights | MACs | receptive field | output |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        shp = " x ".join(map(str, r["output_shape"]))
        out.append(f"| {name} | {r['weights']:,} | {r['macs']:,} | {r['receptive_field']} | {shp} |")
    return [*out, ""]
