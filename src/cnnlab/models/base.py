"""The one anatomy every cnnlab model has: stem -> stages -> head.

Fine-tuning, freezing and the analyzer rely on it and never special-case a family (DESIGN.md rule 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn


@dataclass(frozen=True)
class StageInfo:
    """What one stage hands on: its output channels and cumulative stride w.r.t. the input."""

    name: str
    channels: int
    stride: int


class AuxOutputs(NamedTuple):
    """What a model with auxiliary classifiers returns in training mode (eval mode returns logits only)."""

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]


class ClassifierNet(nn.Module):
    """Base of every zoo model.

    Subclasses build `self.stem`, `self.stages` (an nn.Sequential of stages) and `self.head` (a module with a
    `reset(num_classes)` method), set `self.stage_info` (one StageInfo per stage) and `self.min_input_size`
    (the smallest square input, in pixels, that every mode's forward takes, training mode's auxiliary heads
    included). A model whose auxiliary heads need more than its main path also sets `min_eval_input_size`:
    the smallest input of an eval-mode forward, where they do not run. `smallest_input(training)` is the one
    that applies.
    """

    stem: nn.Module
    stages: nn.Sequential
    head: nn.Module
    stage_info: tuple[StageInfo, ...]
    min_input_size: int
    min_eval_input_size: int | None = None  # None: the same as min_input_size
    model_name: str = ""

    def smallest_input(self, training: bool) -> int:
        """The smallest square input (pixels) of a forward in training (True) or eval (False) mode."""
        if training or self.min_eval_input_size is None:
            return self.min_input_size
        return min(self.min_eval_input_size, self.min_input_size)  # eval never needs more than training

    def check_input(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2], x.shape[-1]
        need = self.smallest_input(self.training)
        if min(h, w) >= need:
            return
        name = self.model_name or type(self).__name__
        msg = f"{name} needs an input of at least {need}x{need} pixels"
        relaxed = self.smallest_input(training=False)
        if relaxed < need:  # only auxiliary heads make the two differ: say what lifts the limit
            msg += (
                f" in training mode, where its auxiliary heads run, got {h}x{w}; "
                f"aux_logits=False (or eval mode) allows {relaxed}x{relaxed}"
            )
        else:
            msg += f", got {h}x{w}"
        raise ValueError(msg)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (before the head's pooling)."""
        self.check_input(x)
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the final classifier layer with a fresh one for `num_classes` classes."""
        self.head.reset(num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes


class AuxClassifierNet(ClassifierNet):
    """A ClassifierNet with auxiliary classifiers on named blocks inside its stages (GoogLeNet, Inception-v3).

    `aux_heads` maps a head's name to the head; `aux_taps` maps it to "<stage index>.<block name>", whose output
    it reads. In training mode, forward returns AuxOutputs(logits, aux) with aux in the order of
    `aux_heads` (from the input side); in eval mode, or with no aux heads, only the logits.
    """

    aux_heads: nn.ModuleDict
    aux_taps: dict[str, str]

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxOutputs:
        if not (self.training and len(self.aux_heads) > 0):
            return super().forward(x)
        self.check_input(x)
        readers = {tap: name for name, tap in self.aux_taps.items()}
        aux: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            for block_name, block in stage.named_children():
                x = block(x)
                if (name := readers.get(f"{i}.{block_name}")) is not None:
                    aux[name] = self.aux_heads[name](x)
        return AuxOutputs(self.head(x), tuple(aux[name] for name in self.aux_heads))

    def reset_head(self, num_classes: int) -> None:
        super().reset_head(num_classes)
        for head in self.aux_heads.values():  # fine-tuning trains them too
            head.reset(num_classes)


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    year: int
    arxiv: str | None = None
    table: str | None = None  # where in the paper the architecture is specified


@dataclass(frozen=True)
class Published:
    """Figures published for a variant; `None` where nobody published one.

    `gmacs` is billions of multiply-adds at the family's default input size, as rounded by its source;
    `top1` is ImageNet top-1 accuracy in percent.
    """

    params: int | None = None
    gmacs: float | None = None
    top1: float | None = None
    source: str = ""


KeyRules = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Family:
    """One architecture family: the paper, its table of variants, and how to build them.

    `build(spec, num_classes, in_chans)` returns a ClassifierNet. `torchvision` maps cnnlab variant names to
    torchvision's builder names; `torchvision_keys` (and `timm_keys`) are ordered (regex, replacement) rules that
    rename a foreign state_dict key into cnnlab's (applied with re.sub, first matching rule wins); where the
    numbering depends on the variant (torchvision's flat VGG `features` list), they are a function of the built
    model instead.
    """

    name: str
    paper: Paper
    specs: dict[str, Any]
    build: Callable[..., ClassifierNet]
    input_size: Callable[[str, Any], tuple[int, int, int]]
    papers: dict[str, Paper] = field(default_factory=dict)  # per-variant paper where it differs
    published: dict[str, Published] = field(default_factory=dict)
    deviations: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per variant; "*" for all
    torchvision: dict[str, str] = field(default_factory=dict)
    torchvision_keys: KeyRules | Callable[[ClassifierNet], KeyRules] = ()
    timm: dict[str, str] = field(default_factory=dict)
    timm_keys: KeyRules | Callable[[ClassifierNet], KeyRules] = ()
    default_num_classes: Callable[[str, Any], int] = lambda name, spec: 1000


def fixed_input(size: tuple[int, int, int]) -> Callable[[str, Any], tuple[int, int, int]]:
    return lambda name, spec: size
