"""Optimizers with parameter groups by anatomy, learning-rate schedules as pure functions of the step, and EMA.

Groups are named after the model's anatomy (`stem`, `stages`, `head`, `other`) and split into decayed weights and
undecayed norms/biases, so transfer learning can give each part its own learning-rate multiplier.
Schedules compute the rate from the step number alone (plateau adds three numbers of state), which makes a
resumed run set exactly the rates the uninterrupted run would have.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from cnnlab.errors import UnknownNameError
from cnnlab.train.recipe import Recipe

PARTS = ("stem", "stages", "head")  # multiplier keys; `stageK` names one stage


def part_of(param_name: str) -> str:
    """The anatomy part a parameter belongs to: 'stem', 'stages.K' or 'head'.

    Parameters outside the three (GoogLeNet's and Inception-v3's auxiliary classifiers) belong to the head: they
    are trained, never frozen with the backbone, at the head's learning rate.
    """
    if param_name.startswith("stem."):
        return "stem"
    m = re.match(r"stages\.(\d+)\.", param_name)
    if m:
        return f"stages.{m.group(1)}"
    return "head"


def multiplier(part: str, mults: dict[str, float]) -> float:
    """The learning-rate multiplier of a part: `stageK` overrides `stages` for stage K; unnamed parts get 1."""
    if part.startswith("stages."):
        return mults.get(f"stage{part.split('.')[1]}", mults.get("stages", 1.0))
    return mults.get(part, 1.0)


def make_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    lr_mult: dict[str, float] | None = None,
    decay_norm_and_bias: bool = False,
    include_frozen: bool = False,
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one per (anatomy part, decayed or not), in stem, stages, head order.

    A stage is a part of its own only when `lr_mult` names it (`stage2=0.5`); otherwise all stages are one part.
    Norm scales/shifts and biases (every tensor with ndim <= 1) get no weight decay unless `decay_norm_and_bias`:
    decaying them only shrinks the normalization's output scale (Goyal et al. 2017, Sec. 5.1). Frozen parameters
    (requires_grad False) are left out unless `include_frozen` (gradual unfreezing: the groups then never
    change, so optimizer state resumes exactly; optimizers skip parameters without a gradient). Each group
    carries `name` ("stages.no_decay"), `part`, `names` (the parameters'), `lr`, `lr_mult` and `weight_decay`.
    """
    mults = dict(lr_mult or {})
    buckets: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad and not include_frozen:
            continue
        part = part_of(name)
        if part.startswith("stages.") and f"stage{part.split('.')[1]}" not in mults:
            part = "stages"
        decay = decay_norm_and_bias or p.ndim >= 2
        g = buckets.setdefault((part, decay), {"params": [], "names": []})
        g["params"].append(p)
        g["names"].append(name)

    def order(key: tuple[str, bool]) -> tuple:
        part, decay = key
        rank = 0 if part == "stem" else 2 if part == "head" else 1
        stage = int(part.split(".")[1]) if part.startswith("stages.") else -1
        return rank, stage, not decay

    groups = []
    for part, decay in sorted(buckets, key=order):
        mult = float(mults.get("stages", 1.0) if part == "stages" else multiplier(part, mults))
        groups.append(
            {
                **buckets[(part, decay)],
                "name": part + ("" if decay else ".no_decay"),
                "part": part,
                "lr": lr * mult,
                "lr_mult": mult,
                "weight_decay": weight_decay if decay else 0.0,
            }
        )
    return groups


def param_groups(model: nn.Module, recipe: Recipe, lr_mults: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """make_groups with the recipe's learning rate and decay rule; `lr_mults` keys are checked."""
    mults = dict(lr_mults or {})
    known = [*PARTS, *(f"stage{i}" for i in range(len(getattr(model, "stages", ()))))]
    for key in mults:
        if key not in known:
            raise UnknownNameError("parameter group", key, known)
    return make_groups(model, recipe.lr, recipe.weight_decay, mults, recipe.decay_norm_and_bias)


def build_optimizer(
    model: nn.Module,
    recipe: Recipe,
    lr_mults: dict[str, float] | None = None,
    groups: list[dict[str, Any]] | None = None,
) -> torch.optim.Optimizer:
    """The recipe's optimizer over `groups` (default: param_groups by anatomy); each group keeps an `lr_mult`."""
    groups = param_groups(model, recipe, lr_mults) if groups is None else [dict(g) for g in groups]
    for g in groups:
        g.setdefault("lr_mult", 1.0)
        g.setdefault("weight_decay", recipe.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    for g in groups:
        g["lr"] = recipe.lr * g["lr_mult"]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr, betas=tuple(recipe.betas), eps=recipe.eps)
    # RMSprop as in MobileNet v1/v2 (Howard et al. 2017; Sandler et al. 2018): decay 0.9, momentum 0.9.
    return torch.optim.RMSprop(groups, lr=recipe.lr, alpha=recipe.alpha, eps=recipe.eps, momentum=recipe.momentum)


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


class LRSchedule:
    """lr(step) = recipe.lr * group multiplier * factor(step).

    step: divide by 1/gamma at each milestone (epochs or iterations); plateau: divide when the validation
    accuracy has not improved for `plateau_patience` epochs (Krizhevsky et al. 2012 Sec. 5); cosine: half a
    cosine from 1 to `min_lr_ratio` (Loshchilov & Hutter 2017); onecycle: cosine up from 1/div over
    `onecycle_pct` of the run, then down to 1/(div*final_div) (Smith & Topin 2017); exp: gamma per epoch.
    All but onecycle start with `warmup_epochs` of linear warm-up (Goyal et al. 2017).
    """

    def __init__(self, recipe: Recipe, steps_per_epoch: int, total_steps: int):
        self.r = recipe
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total_steps = max(1, total_steps)
        self.warmup_steps = round(recipe.warmup_epochs * self.steps_per_epoch)
        unit = 1 if recipe.milestone_unit == "iteration" else self.steps_per_epoch
        self.milestone_steps = [round(m * unit) for m in recipe.milestones]
        # plateau state: the only schedule state that is not a function of the step
        self.best = -math.inf
        self.bad_epochs = 0
        self.scale = 1.0

    def factor(self, step: int) -> float:
        r = self.r
        if r.schedule == "onecycle":
            # Phase boundaries as in torch.optim.lr_scheduler.OneCycleLR (the test's oracle).
            rise_end = max(1.0, r.onecycle_pct * self.total_steps - 1)
            fall_end = max(rise_end + 1, self.total_steps - 1)
            lo, end = 1.0 / r.onecycle_div, 1.0 / (r.onecycle_div * r.onecycle_final_div)
            if step <= rise_end:
                return _cos_anneal(lo, 1.0, step / rise_end)
            return _cos_anneal(1.0, end, min(1.0, (step - rise_end) / (fall_end - rise_end)))
        if step < self.warmup_steps:
            return r.warmup_start + (1 - r.warmup_start) * step / self.warmup_steps
        if r.schedule == "constant":
            return 1.0
        if r.schedule == "step":
            return r.gamma ** sum(step >= m for m in self.milestone_steps)
        if r.schedule == "plateau":
            return self.scale
        if r.schedule == "exp":
            return r.gamma ** (step // self.steps_per_epoch)
        # cosine
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return r.min_lr_ratio + (1 - r.min_lr_ratio) * (1 + math.cos(math.pi * t)) / 2

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's rate for `step`; returns the base rate."""
        f = self.factor(step)
        for g in optimizer.param_groups:
            g["lr"] = self.r.lr * g.get("lr_mult", 1.0) * f
        return self.r.lr * f

    def epoch_end(self, val_acc: float | None) -> bool:
        """Feed the plateau rule; True when the rate was just divided."""
        if self.r.schedule != "plateau" or val_acc is None:
            return False
        if val_acc > self.best + self.r.plateau_threshold:
            self.best, self.bad_epochs = val_acc, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.r.plateau_patience:
            self.scale *= self.r.gamma
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "scale": self.scale}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.best, self.bad_epochs, self.scale = float(d["best"]), int(d["bad_epochs"]), float(d["scale"])


class EMA:
    """An exponential moving average of the weights (Polyak averaging); buffers such as BN statistics are copied."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        for k, v in d.items():
            self.shadow[k].copy_(v)
