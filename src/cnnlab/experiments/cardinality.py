"""`cardinality`: at the same cost, more groups (cardinality C) beat more width (Xie et al. 2017, ResNeXt,
Sec. 3.3-4, Tables 2-3).

CIFAR-sized bottleneck ResNets from the zoo's ResNet family (`resnet50` with overrides: the CIFAR stem,
3 blocks per stage as ResNeXt-29, stage widths 16-32-64 so blocks output 64-128-256 channels), one arm per
row of Table 2's template: C x d = 1x64d, 2x40d, 4x24d, 8x14d, 32x4d, whose MACs the paper keeps equal. The cost
claims are exact: each net's MACs within 5% of the 1x64d net's (analyzer), and one block's MACs equal Sec.
3.3's (8Cc + 9c^2) x H x W x G (REFERENCES.md section 5; c = d here). The accuracy claims are paired over
seeds: 32x4d tests and trains better than 1x64d, and so does 4x24d.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare, exact_claim

TABLE2 = ((1, 64), (2, 40), (4, 24), (8, 14), (32, 4))  # Xie et al. Table 2: C, d at ResNet-50's complexity


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x 5 arms; 4,000 images took 59 min under load, over the 40-min budget (docs/reproduce.md).
    train_images: int = 2_500
    epochs: int = 5
    widths: tuple[int, int, int] = (16, 32, 64)
    blocks: int = 3  # per stage (ResNeXt-29 has 3)
    cardinalities: tuple[int, ...] = (1, 2, 4, 8, 32)  # rows of Table 2
    mac_tolerance: float = 0.05


def _arms(cfg: Config) -> list[Arm]:
    d_of = dict(TABLE2)
    if any(c not in d_of for c in cfg.cardinalities) or 1 not in cfg.cardinalities:
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"config: cardinalities must include 1 and come from {[c for c, _ in TABLE2]}")
    base = {"stem": "cifar", "depths": [cfg.blocks] * 3, "widths": list(cfg.widths)}
    return [
        Arm(f"c{c}", f"{c}x{d_of[c]}d", "resnet50", {**base, "groups": c, "width_per_group": d_of[c]})
        for c in cfg.cardinalities
    ]


def extra(cfg: Config, r: dict[str, Any]) -> dict[str, Any]:
    """One ResNeXt block of Sec. 3.3 (256 channels in and out, C = 64) per Table 2 row, on an 8 x 8 map."""
    import cnnlab
    from cnnlab.nn.residual import Bottleneck

    hw, blocks = 8 * 8, []
    for g, c in TABLE2:
        rep = cnnlab.analyze(Bottleneck(256, g * c, 256, groups=g), (256, 8, 8))
        macs = sum(row.macs for row in rep.rows if row.leaf and row.kind == "Conv2d")
        blocks.append({"G": g, "c": c, "macs": macs, "formula": (8 * 64 * c + 9 * c * c) * hw * g})
    lines = ["One block of Sec. 3.3 (256 channels in and out) on an 8 x 8 map, conv MACs:", "",
             "| G x c | analyzer | (8Cc + 9c^2) x H x W x G | per pixel |", "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {b['G']}x{b['c']} | {b['macs']:,} | {b['formula']:,} | {b['macs'] // hw:,} |" for b in blocks]
    return {"blocks": blocks, "lines": [*lines, ""]}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, arms, one = published("cardinality"), r["arms"], "c1"
    claims = [
        exact_claim(f"block_{b['G']}x{b['c']}", f"a {b['G']}x{b['c']} block costs (8Cc + 9c^2) HWG MACs",
                    b["macs"], b["formula"], p["block"])
        for b in r["analysis"]["blocks"]
    ]  # fmt: skip
    claims += [
        exact_claim(f"macs_{name}", f"{a['label']} costs what 1x64d costs", a["macs"], arms[one]["macs"],
                    p["matched"], rel_tol=cfg.mac_tolerance)
        for name, a in arms.items() if name != one
    ]  # fmt: skip
    for c in (4, 32):
        if f"c{c}" in arms:
            lab = arms[f"c{c}"]["label"]
            claims += [
                compare(r, f"test_c{c}", f"{lab} tests better than 1x64d", "test_error", f"c{c}", one, p["test"]),
                compare(r, f"train_c{c}", f"{lab} trains better than 1x64d", "final_train_error", f"c{c}", one,
                        p["train"]),
            ]  # fmt: skip
    return claims


EXPERIMENT = Experiment(
    name="cardinality",
    claim="at the same MACs, more groups (cardinality) beat more width",
    source="Xie et al. 2017, arXiv:1611.05431, Sec. 3.3-4, Tables 2-3",
    config=Config,
    # 2 blocks per stage, not 1: with 1, the stem and projections weigh enough that 32x4d is 7% over 1x64d's MACs
    quick={**QUICK, "train_images": 384, "blocks": 2, "cardinalities": (1, 32)},
    paper={**PAPER, "epochs": 300, "widths": (64, 128, 256)},
    arms=_arms,
    judge=judge,
    extra=extra,
    min_classes=2,
)  # fmt: skip
