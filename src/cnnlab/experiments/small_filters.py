"""`small-filters`: three stacked 3x3 convs beat one 7x7, two 3x3 beat one 5x5 (Simonyan & Zisserman 2014,
Sec. 2.3 and 4.1).

Four lab nets (cnnlab.models.labnet) that differ only in their conv unit, so every stage has the same output
shape and the nets have the same receptive field: one 7x7 vs three 3x3 (both see 7x7), one 5x5 vs two 3x3
(both see 5x5). The cost claims are exact, from the analyzer on one unit: 49C^2 vs 27C^2 and 25C^2 vs 18C^2
conv weights, and equal receptive fields. The accuracy claims are paired over seeds on test error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.costs import conv_cost, table
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare, exact_claim

# (arm name, unit, its kernel-squared count per C^2: one K x K has K^2, N stacked 3x3 have 9N)
UNITS = (("conv7", "7x7", 49), ("stack3", "3x(3x3)", 27), ("conv5", "5x5", 25), ("stack2", "2x(3x3)", 18))
FIELD = {"conv7": 7, "stack3": 7, "conv5": 5, "stack2": 5}  # pixels each unit sees


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x 4 arms in about 15 minutes on 2 CPU cores (docs/reproduce.md has the measured time).
    train_images: int = 5_000
    epochs: int = 6
    widths: tuple[int, ...] = (16, 32, 64)
    depth: int = 2  # units per stage


def _arms(cfg: Config) -> list[Arm]:
    args = {"widths": list(cfg.widths), "stem_channels": cfg.widths[0], "depth": cfg.depth}
    return [
        Arm(name, f"{unit} units", "labnet", {**args, "units": [unit] * len(cfg.widths)}) for name, unit, _ in UNITS
    ]


def _probe(cfg: Config) -> tuple[int, int, int]:
    return (cfg.widths[-1], 8, 8)  # the last stage's width at its 8 x 8 map


def extra(cfg: Config, r: dict[str, Any]) -> dict[str, Any]:
    from cnnlab.models.labnet import unit

    c, shape = cfg.widths[-1], _probe(cfg)
    units = {name: conv_cost(unit(kind, c, c), shape) for name, kind, _ in UNITS}
    return {"units": units, "lines": table({kind: units[name] for name, kind, _ in UNITS}, shape)}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, units, c = published("small-filters"), r["analysis"]["units"], cfg.widths[-1]
    claims = [
        exact_claim(f"weights_{name}", f"a {kind} unit has {k}C^2 conv weights (C = {c})",
                    units[name]["weights"], k * c * c, p["weights"])
        for name, kind, k in UNITS
    ]  # fmt: skip
    claims += [
        exact_claim(f"field_{name}", f"a {kind} unit sees {FIELD[name]} x {FIELD[name]} pixels",
                    units[name]["receptive_field"], FIELD[name], p["field"], unit=" px")
        for name, kind, _ in UNITS
    ]  # fmt: skip
    test = "test_error"
    return [
        *claims,
        compare(r, "three_3x3", "three 3x3 test better than one 7x7", test, "stack3", "conv7", p["three_3x3"]),
        compare(r, "two_3x3", "two 3x3 test better than one 5x5", test, "stack2", "conv5", p["two_3x3"]),
    ]


EXPERIMENT = Experiment(
    name="small-filters",
    claim="stacked 3x3 convs see as far as one large conv, with fewer weights, and learn better",
    source="Simonyan & Zisserman 2014, arXiv:1409.1556, Sec. 2.3 and 4.1 (Table 3)",
    config=Config,
    quick={**QUICK, "widths": (8, 16, 32)},
    paper={**PAPER, "epochs": 74, "seeds": 3, "widths": (64, 128, 256), "lr": 0.01},
    arms=_arms,
    judge=judge,
    extra=extra,
    min_classes=2,
)
