"""`augmentation`: data augmentation fights overfitting (Krizhevsky et al. 2012, Sec. 4.1; He et al. 2015,
Sec. 4.2; DeVries & Taylor 2017).

ResNet-20 on a small CIFAR-10 subset (2,000 images, so that overfitting shows inside the budget), trained five
ways that add one augmentation at a time: none, flip, flip + 4-pixel crop, + AlexNet's PCA lighting, + cutout.
Each epoch also measures the error on 1,000 un-augmented training images (recipe.train_eval_images), so every
trial has a clean training error and a train-test gap (test error minus clean training error). Claims, paired
over seeds: each step of the chain tests better than the one before, and the full chain's gap is smaller than
no augmentation's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare

# (arm, label, augment spec): each row adds one operation to the one above it.
CHAIN = (
    ("none", "no augmentation", ""),
    ("flip", "flip", "flip"),
    ("crop", "flip + crop", "flip,crop:4"),
    ("pca", "flip + crop + PCA lighting", "flip,crop:4,pca:0.1"),
    ("cutout", "flip + crop + PCA + cutout 8", "flip,crop:4,pca:0.1,cutout:8"),
)


@dataclass(frozen=True)
class Config(Setup):
    train_images: int = 2_000  # a subset small enough that the unaugmented net overfits within the epochs
    epochs: int = 15
    model: str = "resnet20"
    train_eval_images: int = 1_000  # un-augmented training images each epoch measures (the gap's train side)


def _arms(cfg: Config) -> list[Arm]:
    return [Arm(name, label, cfg.model, recipe={"augment": spec, "train_eval_images": cfg.train_eval_images})
            for name, label, spec in CHAIN]  # fmt: skip


def evaluate(cfg: Config, r: dict[str, Any], out: Any, device: str, log: Any) -> dict[str, Any]:
    """The train-test gap of every trial, from numbers the trials recorded (nothing is re-evaluated)."""
    for t in r["trials"]:
        t["train_test_gap"] = t["test_error"] - t["final_clean_train_error"]
    return {"gap": "test_error - final_clean_train_error, per trial"}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p = published("augmentation")
    why = {"flip": p["overfit"], "crop": p["crop"], "pca": p["pca"], "cutout": p["cutout"]}
    claims = []
    for (prev, prev_label, _), (name, label, _) in zip(CHAIN, CHAIN[1:]):
        claims.append(compare(r, f"test_{name}", f"{label} tests better than {prev_label}", "test_error", name,
                              prev, why[name]))  # fmt: skip
    claims.append(compare(r, "gap", "with every augmentation the train-test gap is smaller than with none",
                          "train_test_gap", "cutout", "none", p["overfit"]))  # fmt: skip
    return claims


def report(cfg: Config, r: dict[str, Any], out: Any) -> list[str]:
    from cnnlab.experiments import stats

    lines = ["Train-test gap (test error minus the error on the un-augmented training images), mean ± std:", "",
             "| arm | clean train error % | test error % | gap pp |", "|---|---:|---:|---:|"]  # fmt: skip
    for name, label, _ in CHAIN:
        mine = [t for t in r["trials"] if t["arm"] == name]
        clean, test = (stats.mean_std([t[k] for t in mine]) for k in ("final_clean_train_error", "test_error"))
        gap = stats.mean_std([t["train_test_gap"] for t in mine])
        lines.append(f"| {label} | {100 * clean['mean']:.1f} | {100 * test['mean']:.1f} | "
                     f"{100 * gap['mean']:.1f} ± {100 * (gap['std'] or 0):.1f} |")  # fmt: skip
    return [*lines, ""]


EXPERIMENT = Experiment(
    name="augmentation",
    claim="data augmentation fights overfitting: each operation lowers test error and the train-test gap",
    source="Krizhevsky et al. 2012, Sec. 4.1; He et al. 2015, Sec. 4.2; DeVries & Taylor 2017",
    config=Config,
    quick={**QUICK, "train_images": 384, "epochs": 2, "train_eval_images": 128},
    paper={**PAPER, "epochs": 164, "train_eval_images": 10_000},
    arms=_arms,
    judge=judge,
    evaluate=evaluate,
    report=report,
)
