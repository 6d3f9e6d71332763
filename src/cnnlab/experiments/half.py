"""`half`: fp16 training needs fp32 master weights and loss scaling (Micikevicius et al. 2017, arXiv:1710.03740,
Sec. 3.1-3.2, Table 1).

LeNet-5 on CIFAR-10 (no norm layers, so every layer with weights is emulated), trained in fp32 and with fp16
weights, activations, gradients and updates (cnnlab.precision's emulation, round-to-nearest as fp16 hardware):
  * mixed: fp32 master weights and dynamic loss scaling (from 2^16, halved on an overflow, doubled after 2,000
    good steps) -- Micikevicius et al.'s recipe;
  * nomaster: the same without the master copy: the weights are stored in fp16, so an update below half a unit
    in the last place of its weight (weight / update >= 2048 for fp16's 10-bit mantissa) is lost;
  * noscale: the masters without loss scaling: gradients below fp16's smallest subnormal, 2^-24, flush to zero.
Each trial's metrics.csv counts, per epoch, the nonzero updates that left their weight unchanged and the nonzero
gradient elements rounded to zero; the report puts them beside the accuracy (half.png).

Claims, fixed before any run, paired over seeds (stats.RULE): without masters more updates are lost, and the net
tests worse; without loss scaling more gradients flush, and the net tests worse; the mixed recipe costs less than
`margin` (2 pp) of test error against fp32 (Table 1: within a few tenths of a point on ImageNet).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.experiments import precision_lab as lab
from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare

FP16 = {"weights": "fp16", "activations": "fp16", "gradients": "fp16", "update": "fp16"}
# (arm, label, emulate table)
ARMS = (
    ("fp32", "fp32", {}),
    ("mixed", "fp16, fp32 masters, loss scaling", {**FP16, "master": True, "loss_scale": "dynamic"}),
    ("nomaster", "fp16, no masters, loss scaling", {**FP16, "master": False, "loss_scale": "dynamic"}),
    ("noscale", "fp16, fp32 masters, no loss scaling", {**FP16, "master": True, "loss_scale": "off"}),
)


@dataclass(frozen=True)
class Config(Setup):
    train_images: int = 5_000
    epochs: int = 20
    lr: float = 0.05
    weight_decay: float = 5e-4
    model: str = "lenet5"
    margin: float = 0.02  # the mixed recipe within this much test error of fp32


def _arms(cfg: Config) -> list[Arm]:
    if not 0 <= cfg.margin < 1:
        raise CnnlabError(f"config: margin must be in [0, 1), got {cfg.margin}")
    return [Arm(name, label, cfg.model, recipe={"emulate": dict(table)} if table else {})
            for name, label, table in ARMS]  # fmt: skip


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p = published("half")
    return [
        compare(r, "lost", "without fp32 masters more weight updates are lost", "lost_updates", "mixed", "nomaster",
                p["lost"]),
        compare(r, "master", "without fp32 masters the net tests worse", "test_error", "mixed", "nomaster",
                p["master"]),
        compare(r, "flushed", "without loss scaling more gradients flush to zero", "flushed_grads", "mixed",
                "noscale", p["flushed"]),
        compare(r, "scale", "without loss scaling the net tests worse", "test_error", "mixed", "noscale",
                p["scale"]),
        compare(r, "mixed", f"fp16 with masters and loss scaling costs less than {100 * cfg.margin:g} pp against fp32",
                "test_error", "mixed", "fp32", p["mixed"], margin=cfg.margin),
    ]  # fmt: skip


def report(cfg: Config, r: dict[str, Any], out: Path) -> list[str]:
    names = [a for a, _, _ in ARMS]
    lab.counters_figure(r, out, "half.png", names)
    return ["Accuracy beside the counters:", "", *lab.counters_table(r, names),
            "![test error, lost updates and flushed gradients per arm](half.png)", ""]  # fmt: skip


EXPERIMENT = Experiment(
    name="half",
    claim="fp16 training needs fp32 master weights (lost updates) and loss scaling (flushed gradients)",
    source="Micikevicius et al. 2017, arXiv:1710.03740, Sec. 3.1-3.2, Table 1; REFERENCES.md section 8",
    config=Config,
    quick={**QUICK, "train_images": 400, "test_images": 200, "epochs": 2, "seeds": 2},
    paper={**PAPER, "epochs": 60},
    arms=_arms,
    judge=judge,
    evaluate=lab.evaluate,
    report=report,
)
