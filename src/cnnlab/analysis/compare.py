"""The lecture's "compare complexity" chart (Canziani, Paszke & Culurciello 2016, Fig. 2): GMACs on a log x axis,
published ImageNet top-1 on y, bubble area proportional to parameters, every bubble labelled."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cnnlab.analysis.api import analyze


@dataclass(frozen=True)
class Entry:
    name: str
    params: int
    macs: int
    input_size: tuple[int, ...]
    top1: float | None  # published ImageNet top-1 (%), None where nobody published one

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def compare(names: Sequence[str], input_size: Sequence[int] | None = None) -> list[Entry]:
    """Params, MACs (at each model's default input unless `input_size`) and published top-1 of zoo models."""
    from cnnlab.registry import model_info

    out = []
    for name in names:
        info = model_info(name)  # raises UnknownNameError (with suggestions) first
        rep = analyze(name, input_size=input_size)
        out.append(Entry(name, rep.total_params, rep.total_macs, tuple(rep.input_shape[1:]), info.published.top1))
    return out


def to_text(entries: Sequence[Entry]) -> str:
    lines = [f"{'name':<24} {'params':>13} {'GMACs':>9} {'top-1 %':>8} {'input':>11}"]
    for e in entries:
        top1 = f"{e.top1:.2f}" if e.top1 is not None else "-"
        size = "x".join(map(str, e.input_size))
        lines.append(f"{e.name:<24} {e.params:>13,} {e.gmacs:>9.3f} {top1:>8} {size:>11}")
    return "\n".join(lines) + "\n"


def plot_bubbles(entries: Sequence[Entry], path: str | Path) -> list[str]:
    """Write the chart to `path` (atomically); returns the names left out for want of a published top-1."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; also safe on headless CI
    import matplotlib.pyplot as plt

    shown = [e for e in entries if e.top1 is not None and e.macs > 0]
    skipped = [e.name for e in entries if e not in shown]
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    if shown:
        biggest = max(e.params for e in shown)
        # area ~ params: matplotlib's `s` is an area in points^2
        sizes = [2500 * e.params / biggest + 20 for e in shown]
        ax.scatter([e.gmacs for e in shown], [e.top1 for e in shown], s=sizes, alpha=0.45, edgecolors="k")
        for e in shown:
            ax.annotate(
                f"{e.name}\n{e.params / 1e6:.1f}M",
                (e.gmacs, e.top1),
                ha="center",
                va="center",
                fontsize=7,
            )
        lo = min(e.gmacs for e in shown)
        hi = max(e.gmacs for e in shown)
        ax.set_xlim(10 ** (math.log10(lo) - 0.3), 10 ** (math.log10(hi) + 0.3))
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(y=0.12)
    ax.set_xlabel("GMACs (multiply-accumulates per image, log scale)")
    ax.set_ylabel("published ImageNet top-1 (%)")
    ax.set_title("Accuracy vs. operations; bubble area ~ parameters (after Canziani et al. 2016)")
    ax.grid(True, which="both", alpha=0.3)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", suffix=path.suffix or ".png")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=(path.suffix.lstrip(".") or "png"), bbox_inches="tight")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return skipped
