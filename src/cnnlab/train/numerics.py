"""Number formats and memory layout of a training step: precision checks, autocast, channels-last, the loss."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.machine import cpu_has_native_bf16
from cnnlab.models.base import AuxOutputs


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise CnnlabError("precision bf16: this GPU has no bf16 support; use precision=fp16 or fp32")
        if device.type == "cpu" and not cpu_has_native_bf16():
            raise CnnlabError(
                "precision bf16: this CPU has no native bf16 instructions (avx512_bf16/amx_bf16), so bf16 "
                "would be emulated and slower than fp32; use --set precision=fp32"
            )


def autocast(precision: str, device: torch.device):  # noqa: ANN201 (a context manager of either kind)
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(recipe: Any, device: torch.device) -> bool:
    """Resolve the recipe's channels_last ("auto" | "true" | "false") for this device and precision."""
    if recipe.channels_last == "auto":
        return device.type == "cpu" or (device.type == "cuda" and recipe.precision != "fp32")
    return recipe.channels_last == "true"


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool) -> tuple:
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


def logits_of(out: Any) -> torch.Tensor:
    return out.logits if isinstance(out, AuxOutputs) else out


def loss_fn(out: Any, y: torch.Tensor, recipe: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits): cross-entropy, plus `aux_weight` x each auxiliary head's (Szegedy et al. 2014 Sec. 5)."""
    if isinstance(out, AuxOutputs):
        logits = out.logits
        loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        for aux in out.aux:
            loss = loss + recipe.aux_weight * F.cross_entropy(aux.float(), y, label_smoothing=recipe.label_smoothing)
        return loss, logits
    return F.cross_entropy(out.float(), y, label_smoothing=recipe.label_smoothing), out
