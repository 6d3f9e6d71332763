"""`degradation`: deeper plain nets train worse; residual connections fix it (He et al. 2015, Sec. 4.2, Fig. 6).

Plain-n and ResNet-n (n = 6k+2, 16-32-64 filters on 32-16-8 maps) with option A shortcuts: identity plus zero
padding, so a plain net and its residual twin have exactly the same parameters. The recipe is the paper's
(SGD 0.9, batch 128, wd 1e-4, lr 0.1 divided by 10 at 50% and 75% of the run, pad-4 crop + flip) on a shorter
budget; the verdict compares training error at the end of that budget, as REFERENCES.md section 7 defines it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x 4 arms in about 40 minutes on 2 CPU cores (docs/reproduce.md has the measured time).
    train_images: int = 5_000
    epochs: int = 6
    shallow: int = 20  # depths compared; the zoo has plain/resnet 20, 32, 44, 56, 110
    deep: int = 56


def arms(cfg: Config) -> list[Arm]:
    return [
        Arm(f"plain{cfg.shallow}", f"plain-{cfg.shallow}", f"plain{cfg.shallow}"),
        Arm(f"plain{cfg.deep}", f"plain-{cfg.deep}", f"plain{cfg.deep}"),
        Arm(f"resnet{cfg.shallow}", f"ResNet-{cfg.shallow}", f"resnet{cfg.shallow}"),
        Arm(f"resnet{cfg.deep}", f"ResNet-{cfg.deep}", f"resnet{cfg.deep}"),
    ]


def recipe_for(cfg: Config) -> dict[str, Any]:
    # He et al.: lr / 10 at 32k and 48k of 64k iterations, i.e. at 50% and 75% of the run.
    return {"schedule": "step", "milestones": (cfg.epochs * 0.5, cfg.epochs * 0.75), "momentum": 0.9}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p = published("degradation")
    s, d = cfg.shallow, cfg.deep
    train, test = "final_train_error", "test_error"
    return [
        compare(r, "plain_train", f"plain-{d} trains worse than plain-{s}", train, f"plain{s}", f"plain{d}",
                p["plain_train"]),
        compare(r, "resnet_train", f"ResNet-{d} trains at least as well as ResNet-{s}", train, f"resnet{d}",
                f"resnet{s}", p["resnet_train"]),
        compare(r, "residual_fixes", f"ResNet-{d} trains better than plain-{d}", train, f"resnet{d}", f"plain{d}",
                p["residual_fixes"]),
        compare(r, "plain_test", f"plain-{d} tests worse than plain-{s}", test, f"plain{s}", f"plain{d}",
                p["plain_test"]),
        compare(r, "resnet_test", f"ResNet-{d} tests better than ResNet-{s}", test, f"resnet{d}", f"resnet{s}",
                p["resnet_test"]),
    ]  # fmt: skip


def _arms(cfg: Config) -> list[Arm]:
    rec = recipe_for(cfg)
    return [Arm(a.name, a.label, a.model, recipe=rec) for a in arms(cfg)]


EXPERIMENT = Experiment(
    name="degradation",
    claim="deeper plain nets train worse; residual connections fix it",
    source="He et al. 2015, arXiv:1512.03385, Sec. 4.2, Fig. 6",
    config=Config,
    quick={**QUICK, "shallow": 20, "deep": 32},
    paper={**PAPER, "epochs": 182, "val_fraction": 0.1},
    arms=_arms,
    judge=judge,
    min_classes=10,
)  # fmt: skip
