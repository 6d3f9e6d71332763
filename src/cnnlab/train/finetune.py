"""Transfer learning on the common anatomy: freezing, discriminative learning rates, pretrained sources.

Everything here is defined on `stem`, `stages` and `head`, so no family is special-cased. Parameters outside
those three (GoogLeNet's and Inception-v3's auxiliary classifiers) belong to the head: they are trained, not
frozen, with the head's learning rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.errors import CnnlabError, UnknownNameError


def part_of(param_name: str) -> str:
    """The anatomy part a parameter belongs to: 'stem', 'stages.K' or 'head'."""
    if param_name.startswith("stem."):
        return "stem"
    m = re.match(r"stages\.(\d+)\.", param_name)
    if m:
        return f"stages.{m.group(1)}"
    return "head"


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


def _multiplier(part: str, mults: dict[str, float]) -> float:
    if part.startswith("stages."):
        k = part.split(".")[1]
        return mults.get(f"stage{k}", mults.get("stages", 1.0))
    return mults.get(part, 1.0)


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    lr_mult: dict[str, float] | None = None,
    decay_norm_and_bias: bool = False,
    include_frozen: bool = False,
) -> list[dict]:
    """Optimizer parameter groups: one per (learning-rate multiplier, decay or not).

    Norm weights and biases (every parameter with fewer than 2 dims) get no weight decay by default: decaying
    them only fights the normalization (Goyal et al. 2017, "Accurate, large minibatch SGD", Sec. 5.1 note).
    Frozen parameters (requires_grad False) are left out unless `include_frozen` (gradual unfreezing: the
    groups then never change, so optimizer state resumes exactly; optimizers skip parameters without a
    gradient). Each group carries `names` and `lr_mult`.
    """
    lr_mult = lr_mult or {}
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad and not include_frozen:
            continue
        mult = _multiplier(part_of(name), lr_mult)
        decay = decay_norm_and_bias or p.ndim >= 2
        key = (mult, decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "lr": lr * mult,
                "lr_mult": mult,
                "weight_decay": weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


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


# -- the CLI's settings, recorded in the run directory so --resume and torchrun restarts rebuild the same run

TRANSFER_FILE = "transfer.json"


@dataclass
class TransferSettings:
    weights: str | None = None
    freeze: str = "none"
    lr_mult: str | None = None
    unfreeze_at: int | None = None  # epoch (0-based count of finished epochs) at which frozen parts unfreeze

    @property
    def active(self) -> bool:
        return bool(self.weights or self.freeze != "none" or self.lr_mult or self.unfreeze_at is not None)

    def check(self) -> None:
        if self.unfreeze_at is not None:
            if self.freeze == "none":
                raise CnnlabError("--unfreeze-at needs --freeze backbone or --freeze stages:K (nothing is frozen)")
            if self.unfreeze_at < 1:
                raise CnnlabError(f"--unfreeze-at must be an epoch >= 1, got {self.unfreeze_at}")

    def to_dict(self) -> dict:
        return {
            "weights": self.weights,
            "freeze": self.freeze,
            "lr_mult": self.lr_mult,
            "unfreeze_at": self.unfreeze_at,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TransferSettings:
        return cls(d.get("weights"), d.get("freeze", "none"), d.get("lr_mult"), d.get("unfreeze_at"))


def transfer_hooks(
    model: nn.Module,
    settings: TransferSettings,
    lr: float,
    weight_decay: float,
    decay_norm_and_bias: bool = False,
    log=print,  # noqa: ANN001
) -> dict:
    """Freeze `model` as `settings` say and return the keyword hooks for cnnlab.train.loop.train."""
    settings.check()
    plan = plan_freeze(model, settings.freeze)
    mults = parse_lr_mult(settings.lr_mult, model)
    apply_freeze(model, plan)
    gradual = settings.unfreeze_at is not None

    def groups(m: nn.Module) -> list[dict]:
        return param_groups(m, lr, weight_decay, mults, decay_norm_and_bias, include_frozen=gradual)

    def epoch_start(m: nn.Module, epoch: int) -> None:
        if gradual and plan.frozen and epoch >= settings.unfreeze_at:
            parts = ", ".join(plan.frozen)
            unfreeze(m, plan)
            set_train_mode(m, plan)
            log(f"epoch {epoch + 1}: unfrozen {parts}")

    if plan.frozen:
        log(f"frozen ({settings.freeze}): {', '.join(plan.frozen)}; their BatchNorm stays in eval mode")
    return {"param_groups": groups, "train_mode": lambda m: set_train_mode(m, plan), "epoch_start": epoch_start}
