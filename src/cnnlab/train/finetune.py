"""Transfer learning on the common anatomy: freezing, discriminative learning rates, pretrained sources.

Everything here is defined on `stem`, `stages` and `head`, so no family is special-cased. Parameters outside
those three (GoogLeNet's and Inception-v3's auxiliary classifiers) belong to the head (optim.part_of): they are
trained, not frozen, with the head's learning rate. The parameter groups are optim.make_groups'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.train.optim import make_groups as param_groups  # the one builder, under the name fine-tuning uses
from cnnlab.train.optim import part_of

__all__ = [
    "FreezePlan", "apply_freeze", "describe_groups", "param_groups", "parse_lr_mult", "part_of", "plan_freeze",
    "set_train_mode", "tensors_equal", "unfreeze",
]  # fmt: skip


@dataclass
class FreezePlan:
    """Which anatomy parts are frozen ('stem', 'stages.0', ...). Frozen parts get no gradient and keep their
    BatchNorm in eval mode, so their running statistics do not drift."""

    spec: str = "none"
    frozen: list[str] = field(default_factory=list)

    def parts(self, model: nn.Module) -> list[nn.Module]:
        return [model.get_submodule(name) for name in self.frozen]


def plan_freeze(model: nn.Module, spec: str) -> FreezePlan:
    """Parse `none`, `backbone` (stem and every stage) or `stages:K` (stem and the K lowest stages)."""
    n_stages = len(model.stages)
    if spec == "none":
        return FreezePlan(spec, [])
    if spec == "backbone":
        return FreezePlan(spec, ["stem"] + [f"stages.{i}" for i in range(n_stages)])
    m = re.fullmatch(r"stages:(\d+)", spec)
    if not m:
        raise CnnlabError(f"--freeze must be none, backbone or stages:K, got '{spec}'")
    k = int(m.group(1))
    if k > n_stages:
        name = getattr(model, "model_name", "") or type(model).__name__
        raise CnnlabError(f"--freeze stages:{k}: {name} has only {n_stages} stages (0..{n_stages})")
    return FreezePlan(spec, ["stem"] + [f"stages.{i}" for i in range(k)])


def apply_freeze(model: nn.Module, plan: FreezePlan) -> None:
    """Turn off gradients of the frozen parts and put them in eval mode (BN statistics stay fixed)."""
    for part in plan.parts(model):
        part.requires_grad_(False)
        part.eval()


def unfreeze(model: nn.Module, plan: FreezePlan) -> None:
    for part in plan.parts(model):
        part.requires_grad_(True)
    plan.frozen = []


def set_train_mode(model: nn.Module, plan: FreezePlan) -> None:
    """model.train(), except that frozen parts stay in eval mode. Call this instead of model.train()."""
    model.train()
    for part in plan.parts(model):
        part.eval()


def parse_lr_mult(text: str | None, model: nn.Module) -> dict[str, float]:
    """`head=1,stages=0.1,stem=0.01` -> {part: multiplier}. Groups: stem, stages, stageK, head.

    A per-stage key (`stage3=0.5`) overrides `stages` for that stage; unnamed parts default to 1.
    """
    if not text:
        return {}
    known = ["stem", "stages", "head"] + [f"stage{i}" for i in range(len(model.stages))]
    mults: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise CnnlabError(f"--lr-mult takes group=value pairs, got '{item}'")
        if key not in known:
            raise UnknownNameError("--lr-mult group", key, known)
        try:
            mults[key] = float(value)
        except ValueError:
            raise CnnlabError(f"--lr-mult {key}: '{value}' is not a number") from None
        if mults[key] < 0:
            raise CnnlabError(f"--lr-mult {key}: a multiplier cannot be negative ({value})")
    return mults


def describe_groups(groups: list[dict]) -> str:
    lines = []
    for g in groups:
        parts = sorted({part_of(n) for n in g["names"]})
        n = sum(p.numel() for p in g["params"])
        lines.append(f"lr x{g['lr_mult']:g} wd {g['weight_decay']:g}: {n:,} params in {', '.join(parts)}")
    return "\n".join(lines)


def tensors_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensors differ bit for bit (helper for freezing checks)."""
    return [k for k in a if not torch.equal(a[k], b[k])]
