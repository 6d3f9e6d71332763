"""`aux-heads`: GoogLeNet's auxiliary classifiers (Szegedy et al. 2014, Sec. 5), read against Inception-v3's
finding (Szegedy et al. 2015, Sec. 4): they do not speed up early training, and near the end the net with them
reaches a slightly higher plateau.

The zoo's GoogLeNet as a CIFAR variant through overrides: the `cifar` stem (one 3x3 conv at stride 1, so 32 px
inputs reach 3a, 4a and 5a at 32, 16 and 8 px as 224 px ones reach them at 28, 14 and 7) and Table 1's module
widths divided by `narrow`. Two arms, the same net with and without the two heads on 4a and 4d (loss weight
0.3, dropped at inference). Claims, paired over seeds: early in training the heads do not lower the training
error by more than `margin` (the curves overlap); at the end the net with them tests better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup, read_early_train_error
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare
from cnnlab.models.googlenet import TABLE1


@dataclass(frozen=True)
class Config(Setup):
    train_images: int = 5_000
    epochs: int = 8
    narrow: int = 8  # Table 1's widths divided by this (4a's 5x5 reduce of 16 becomes 2)
    aux_weight: float = 0.3  # Sec. 5
    early_fraction: float = 0.25  # "early": the epoch at this fraction of the run (at least the first)
    margin: float = 0.02  # how much lower the early training error with heads may be and still "overlap"


def modules(narrow: int) -> list[list[list[Any]]]:
    """Table 1 with every width divided by `narrow` (at least 2 channels per branch)."""
    return [[[row[0], *(max(2, w // narrow) for w in row[1:])] for row in stage] for stage in TABLE1]


def _arms(cfg: Config) -> list[Arm]:
    if cfg.narrow < 1 or not 0 < cfg.early_fraction <= 1:
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"config: narrow must be >= 1 and early_fraction in (0, 1], got {cfg.narrow}, "
                          f"{cfg.early_fraction}")  # fmt: skip
    base = {"stem": "cifar", "stem_channels": max(2, 192 // cfg.narrow), "modules": modules(cfg.narrow)}
    return [
        Arm("aux", f"with the two heads (weight {cfg.aux_weight:g})", "googlenet", {**base, "aux_logits": True},
            {"aux_weight": cfg.aux_weight}),
        Arm("noaux", "without heads", "googlenet", {**base, "aux_logits": False}),
    ]  # fmt: skip


def evaluate(cfg: Config, r: dict[str, Any], out: Any, device: str, log: Any) -> dict[str, Any]:
    return {"early_epoch": read_early_train_error(r["trials"], cfg.early_fraction, cfg.epochs)}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, k = published("aux-heads"), r["evaluation"]["early_epoch"]
    return [
        compare(r, "early", f"at epoch {k} the heads do not lower the training error (within "
                f"{100 * cfg.margin:g} pp)", "early_train_error", "noaux", "aux", p["early"], margin=cfg.margin),
        compare(r, "plateau", "with the heads the net tests better at the end", "test_error", "aux", "noaux",
                p["plateau"]),
        compare(r, "train", "with the heads the net trains to a lower final training error", "final_train_error",
                "aux", "noaux", p["plateau"]),
    ]  # fmt: skip


EXPERIMENT = Experiment(
    name="aux-heads",
    claim="GoogLeNet's auxiliary heads: no faster early training, a slightly higher plateau",
    source="Szegedy et al. 2014, arXiv:1409.4842, Sec. 5; Inception-v3, arXiv:1512.00567, Sec. 4",
    config=Config,
    quick={**QUICK, "narrow": 16},
    paper={**PAPER, "epochs": 100, "narrow": 1},
    arms=_arms,
    judge=judge,
    evaluate=evaluate,
)
