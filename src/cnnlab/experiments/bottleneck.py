"""`bottleneck`: a 1x1-3x3-1x1 bottleneck keeps a 3x3 block's output shape at a fraction of its cost (He et al.
2015, Fig. 5 and Sec. 4.1; the lecture's seed 004).

Three lab nets (cnnlab.models.labnet): 3x3 units; bottleneck units at the same widths (same output shape
everywhere, about 1/8 of the conv weights); and bottleneck units widened until the net's MACs are within 5% of
the 3x3 net's. The cost claims are exact, from the analyzer on one unit; the accuracy claims are paired over
seeds: the cheap bottleneck pays in accuracy, and at the same MACs the (wider, 3x deeper) bottleneck net
is at least as accurate, the trade He et al. make in ResNet-50/101/152.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.costs import conv_cost, table
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare, exact_claim


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x 3 arms in about 15 minutes on 2 CPU cores (docs/reproduce.md has the measured time).
    train_images: int = 5_000
    epochs: int = 6
    widths: tuple[int, ...] = (32, 64, 128)
    depth: int = 2
    mac_tolerance: float = 0.05  # the widened bottleneck net's MACs are within this fraction of the 3x3 net's


def _net(widths: tuple[int, ...], unit: str, depth: int, stem: int) -> dict[str, Any]:
    return {"widths": list(widths), "stem_channels": stem, "depth": depth, "units": [unit] * len(widths)}


@cache
def _macs(widths: tuple[int, ...], unit: str, depth: int, stem: int) -> int:
    import torch

    import cnnlab

    with torch.device("meta"):
        model = cnnlab.create_model("labnet", **_net(widths, unit, depth, stem))
    return int(cnnlab.analyze(model, (3, 32, 32)).total_macs)


@cache
def matched_widths(widths: tuple[int, ...], depth: int) -> tuple[int, ...]:
    """Bottleneck widths (multiples of 8; the stem stays `widths[0]`) whose net's MACs are closest to the 3x3
    net's."""
    target = _macs(widths, "3x3", depth, widths[0])
    best: tuple[int, tuple[int, ...]] | None = None
    for k in range(8, 8 * 8 + 1):  # scale factors 1.0 .. 8.0 in steps of 1/8
        wide = tuple(max(8, round(w * k / 8 / 8) * 8) for w in widths)
        gap = abs(_macs(wide, "bottleneck", depth, widths[0]) - target)
        if best is None or gap < best[0]:
            best = (gap, wide)
    assert best is not None
    return best[1]


def _arms(cfg: Config) -> list[Arm]:
    w, d = tuple(cfg.widths), cfg.depth
    wide = matched_widths(w, d)
    return [  # one stem for all three: only the units differ
        Arm("conv3", "3x3 units", "labnet", _net(w, "3x3", d, w[0])),
        Arm("bottleneck", "bottleneck units, same widths", "labnet", _net(w, "bottleneck", d, w[0])),
        Arm(
            "wide",
            f"bottleneck units, widths {'-'.join(map(str, wide))} (same MACs)",
            "labnet",
            _net(wide, "bottleneck", d, w[0]),
        ),
    ]


def extra(cfg: Config, r: dict[str, Any]) -> dict[str, Any]:
    from cnnlab.models.labnet import unit

    c = cfg.widths[-1]
    shape = (c, 8, 8)
    units = {"3x3": conv_cost(unit("3x3", c, c), shape), "bottleneck": conv_cost(unit("bottleneck", c, c), shape)}
    return {"units": units, "lines": table(units, shape)}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, u, c, arms = published("bottleneck"), r["analysis"]["units"], cfg.widths[-1], r["arms"]
    m = c // 4
    test = "test_error"
    return [
        exact_claim("shape", f"a bottleneck unit's output shape is a 3x3 unit's (C = {c})",
                    u["bottleneck"]["output_shape"], u["3x3"]["output_shape"], p["shape"]),
        exact_claim("weights_3x3", "a 3x3 unit has 9C^2 conv weights", u["3x3"]["weights"], 9 * c * c, p["weights"]),
        exact_claim("weights_bottleneck", "a bottleneck unit has C^2/4 + 9C^2/16 + C^2/4 conv weights",
                    u["bottleneck"]["weights"], c * m + 9 * m * m + m * c, p["weights"]),
        exact_claim("matched_macs", "the widened bottleneck net's MACs equal the 3x3 net's",
                    arms["wide"]["macs"], arms["conv3"]["macs"], p["matched"], rel_tol=cfg.mac_tolerance),
        compare(r, "cheap_costs", "at the same widths, the 3x3 net tests better than the bottleneck net", test,
                "conv3", "bottleneck", p["cheap"]),
        compare(r, "same_macs", "at the same MACs, the bottleneck net tests better than the 3x3 net", test,
                "wide", "conv3", p["matched"]),
    ]  # fmt: skip


EXPERIMENT = Experiment(
    name="bottleneck",
    claim="a 1x1-3x3-1x1 bottleneck keeps a 3x3 block's shape at a fraction of its cost",
    source="He et al. 2015, arXiv:1512.03385, Fig. 5 and Sec. 4.1; the lecture's seed 004",
    config=Config,
    quick={**QUICK, "widths": (8, 16, 32)},
    paper={**PAPER, "epochs": 160},
    arms=_arms,
    judge=judge,
    extra=extra,
)
