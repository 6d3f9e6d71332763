"""`preact`: full pre-activation residual units (He et al. 2016, arXiv:1603.05027) against the original ones.

Two arms of one CIFAR ResNet-d (n = (d - 2) / 6 units per stage, 16-32-64 filters on 32-16-8 maps): the original
unit (conv-BN-ReLU-conv-BN, addition, ReLU; He et al. 2015) and the full pre-activation unit of Fig. 4(e)
(BN-ReLU-conv-BN-ReLU-conv, addition, nothing after it). Both use option A shortcuts (identity plus zero padding),
so they have exactly the same parameters and differ only in where BN and ReLU sit. DEVIATION: the paper's
pre-activation CIFAR nets use projection shortcuts where the shape changes (the zoo's `preact_resnet110`); A here
keeps the comparison to the unit alone. The recipe is the degradation experiment's (the 2015 paper's, which the
2016 paper keeps): SGD 0.9, batch 128, wd 1e-4, lr 0.1 divided by 10 at 50% and 75% of the run, pad-4 crop + flip.

Claims, paired over seeds: early in training the pre-activation net has the lower training error (Sec. 4.1, ease
of optimization: the paper shows it at 1001 layers and calls the original's handicap not severe at 164, so at the
depths a CPU trains it may not show); its gap between test and training error is smaller (Sec. 4.2, reducing
overfitting); and it tests better at the end (Sec. 4: 110, 164 and 1001 layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup, read_early_train_error
from cnnlab.experiments.degradation import recipe_for
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare
from cnnlab.registry import list_models


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x 2 arms of ResNet-56 in about 25 minutes on 2 CPU cores (docs/reproduce.md has the time).
    train_images: int = 5_000
    epochs: int = 6
    depth: int = 56  # 6n + 2: 20, 32, 44, 56, 110, ... (the paper: 110, 164, 1001)
    early_fraction: float = 0.34  # "early": the epoch at this fraction of the run (epoch 2 of 6)


def units(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise CnnlabError(f"config: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
    return (depth - 2) // 6


def _arms(cfg: Config) -> list[Arm]:
    if not 0 < cfg.early_fraction <= 1:
        raise CnnlabError(f"config: early_fraction must be in (0, 1], got {cfg.early_fraction}")
    n, d, rec = units(cfg.depth), cfg.depth, recipe_for(cfg)
    stages = {"depths": (n, n, n)}
    # The zoo's own CIFAR ResNet-d where there is one (20, 32, 44, 56, 110), else ResNet-110 with n units a stage.
    original = (f"resnet{d}", {}) if f"resnet{d}" in list_models() else ("resnet110", stages)
    return [
        Arm(f"original{d}", f"ResNet-{d}, original unit", *original, rec),
        Arm(f"preact{d}", f"ResNet-{d}, full pre-activation", "preact_resnet110", {**stages, "shortcut": "A"}, rec),
    ]


def evaluate(cfg: Config, r: dict[str, Any], out: Any, device: str, log: Any) -> dict[str, Any]:
    """The early training error (from the curves) and each trial's test - training error gap."""
    for t in r["trials"]:
        t["train_test_gap"] = t["test_error"] - t["final_train_error"]
    return {"early_epoch": read_early_train_error(r["trials"], cfg.early_fraction, cfg.epochs)}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, d, k = published("preact"), cfg.depth, r["evaluation"]["early_epoch"]
    orig, pre = f"original{d}", f"preact{d}"
    return [
        compare(r, "early", f"at epoch {k} the pre-activation ResNet-{d} has the lower training error",
                "early_train_error", pre, orig, p["early"]),
        compare(r, "gap", f"the pre-activation ResNet-{d} has the smaller test - training error gap",
                "train_test_gap", pre, orig, p["gap"]),
        compare(r, "test", f"the pre-activation ResNet-{d} tests better", "test_error", pre, orig, p["test"]),
    ]  # fmt: skip


EXPERIMENT = Experiment(
    name="preact",
    claim="full pre-activation units (BN-ReLU before each conv) train more easily and test better than the original",
    source="He et al. 2016, arXiv:1603.05027, Sec. 4, Fig. 1 and 6",
    config=Config,
    quick={**QUICK, "depth": 20},
    paper={**PAPER, "epochs": 182, "val_fraction": 0.1, "depth": 110},
    arms=_arms,
    judge=judge,
    evaluate=evaluate,
    min_classes=10,
)
