"""The lecture's "compare complexity" chart (Canziani, Paszke & Culurciello 2016, Fig. 2): GMACs on a log x axis,
published ImageNet top-1 on y, bubble area proportional to parameters, every bubble labelled."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.analysis.api import analyze
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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


def chartable(entries: Sequence[Entry]) -> tuple[list[Entry], list[str]]:
    """The entries the chart can show (a published top-1 and some MACs), and the names of the others."""
    shown = [e for e in entries if e.top1 is not None and e.macs > 0]
    return shown, [e.name for e in entries if e not in shown]


def plot_bubbles(entries: Sequence[Entry], path: str | Path) -> list[str]:
    """Write the chart to `path` (atomically); returns the names left out for want of a published top-1.

    Raises CnnlabError, and writes nothing, when no entry can be shown: an empty chart would look like a bug.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; also safe on headless CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    shown, skipped = chartable(entries)
    if not shown:
        raise CnnlabError(f"no chart: none of {', '.join(skipped)} has a published ImageNet top-1 to plot")
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    biggest = max(e.params for e in shown)
    # area ~ params: matplotlib's `s` is an area in points^2
    sizes = [2500 * e.params / biggest + 20 for e in shown]
    xs, ys = [e.gmacs for e in shown], [e.top1 for e in shown]
    ax.scatter(xs, ys, s=sizes, alpha=0.45, edgecolors="k")
    ax.set_xscale("log")
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    pad = max(0.3, 0.12 * (hi - lo))  # room for the labels of the outermost bubbles
    ax.set_xlim(10 ** (lo - pad), 10 ** (hi + pad))
    span = max(max(ys) - min(ys), 2.0)
    ax.set_ylim(min(ys) - 0.15 * span, max(ys) + 0.15 * span)
    # Plain numbers (0.5, 1, 2, 5, 10), not 10^0: GMACs are read, not exponents.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("GMACs (multiply-accumulates per image, log scale)")
    ax.set_ylabel("published ImageNet top-1 (%)")
    ax.set_title("Accuracy vs. operations; bubble area ~ parameters (after Canziani et al. 2016)")
    ax.grid(True, which="major", alpha=0.3)
    labels = [f"{e.name}\n{e.params / 1e6:.1f}M" for e in shown]
    radii = [math.sqrt(s / math.pi) * fig.dpi / 72 for s in sizes]  # points -> pixels
    _place_labels(ax, list(zip(xs, ys)), radii, labels, fontsize=7)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=(path.suffix.lstrip(".") or "png"), bbox_inches="tight")
    finally:
        plt.close(fig)
    return skipped


_Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), pixels
_Point = tuple[float, float]
_Segment = tuple[_Point, _Point]

# Label placement (no adjustText dependency): each label takes the first free spot of a ring of candidates
# around its bubble, nearest first; a leader line joins it to the bubble when it sits away from it.
_ANGLES = (90, 270, 0, 180, 45, 135, 315, 225, 60, 120, 300, 240, 20, 160, 340, 200)
_DISTANCES = (2, 10, 22, 38, 58, 82)  # pixels beyond the bubble's edge


def _place_labels(ax: Axes, points: list[_Point], radii: list[float], labels: list[str], fontsize: float) -> None:
    """Annotate each point (data coordinates) with its label, around its bubble of radius `radii` (pixels)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    centres = [tuple(to_px(p)) for p in points]
    frame = ax.get_window_extent(renderer)
    placed: list[_Box] = []
    leaders: list[_Segment] = []  # the leader lines drawn so far

    def cost(box: _Box, own: int, leader: _Segment | None) -> float:
        x0, y0, x1, y1 = box
        if x0 < frame.x0 or x1 > frame.x1 or y0 < frame.y0 or y1 > frame.y1:
            return math.inf
        c = 10.0 * sum(_overlap(box, b) for b in placed)  # text on text is what makes a chart unreadable
        # A leader line struck through a label reads as a strike-through: as bad as an overlap.
        c += 500.0 * sum(_crosses(seg, box) for seg in leaders)
        if leader is not None:
            c += 500.0 * sum(_crosses(leader, b) for b in placed)
            c += 200.0 * sum(_intersect(leader, seg) for seg in leaders)  # crossed leaders swap labels
        for k, ((cx, cy), r) in enumerate(zip(centres, radii)):
            if k != own:  # text over another bubble is readable (they are translucent), but better avoided
                c += _overlap(box, (cx - 0.7 * r, cy - 0.7 * r, cx + 0.7 * r, cy + 0.7 * r))
        return c

    # The most crowded bubbles choose first, while free spots are still near them.
    def crowding(i: int) -> int:
        (x, y), r = centres[i], radii[i]
        return sum(1 for (u, v) in centres if math.hypot(u - x, v - y) < r + 60)

    for i in sorted(range(len(points)), key=lambda i: (-crowding(i), -radii[i])):
        text = ax.text(0, 0, labels[i], fontsize=fontsize, ha="center", va="center")
        ext = text.get_window_extent(renderer)
        text.remove()
        w, h = ext.width + 2, ext.height + 2
        (cx, cy), r = centres[i], radii[i]
        candidates = []
        if w < 1.9 * r and h < 1.4 * r:  # a big bubble holds its own label
            candidates.append((cx, cy))
        for d in _DISTANCES:
            for a in _ANGLES:
                ux, uy = math.cos(math.radians(a)), math.sin(math.radians(a))
                # the box's edge nearest the bubble sits d pixels beyond the bubble's edge
                candidates.append((cx + ux * (r + d + w / 2), cy + uy * (r + d + h / 2)))
        boxes = [(x - w / 2, y - h / 2, x + w / 2, y + h / 2) for x, y in candidates]
        needs_leader = [math.hypot(x - cx, y - cy) > r + 0.5 * max(w, h) + 8 for x, y in candidates]
        costs = [
            cost(b, i, ((cx, cy), (x, y)) if far else None) for b, (x, y), far in zip(boxes, candidates, needs_leader)
        ]
        best = next((k for k, c in enumerate(costs) if c == 0), min(range(len(costs)), key=costs.__getitem__))
        x, y = candidates[best]
        placed.append(boxes[best])
        far = needs_leader[best]
        if far:
            leaders.append(((cx, cy), (x, y)))
        ax.annotate(
            labels[i],
            points[i],
            xytext=(x - cx, y - cy),
            textcoords="offset pixels",
            ha="center",
            va="center",
            fontsize=fontsize,
            # shrinkB (points) starts the line at the bubble's edge, not its centre
            arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.35", "shrinkA": 0, "shrinkB": r * 72 / fig.dpi}
            if far
            else None,
        )


def _overlap(a: _Box, b: _Box) -> float:
    """Area (pixels^2) shared by two boxes (x0, y0, x1, y1)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _crosses(seg: _Segment, box: _Box) -> bool:
    """Whether a leader line (from a bubble's centre to its label's centre) passes through a box; sampled, as
    the line's own label end is excluded (it ends inside its own box)."""
    (ax_, ay), (bx, by) = seg
    x0, y0, x1, y1 = box
    for k in range(1, 20):  # the inner points of the segment, its ends excluded
        t = k / 20
        x, y = ax_ + t * (bx - ax_), ay + t * (by - ay)
        if x0 < x < x1 and y0 < y < y1:
            return True
    return False


def _intersect(p: _Segment, q: _Segment) -> bool:
    """Whether two segments cross (proper intersection: the orientation test)."""

    def orient(a: _Point, b: _Point, c: _Point) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    (a, b), (c, d) = p, q
    return orient(a, b, c) * orient(a, b, d) < 0 and orient(c, d, a) * orient(c, d, b) < 0
