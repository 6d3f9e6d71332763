"""EfficientNet-B0 ... B7 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", arXiv:1905.11946): the B0 baseline of Table 1 plus one compound-scaling rule (Sec. 3.3, Eq. 3).

Compound scaling: with a user-chosen phi, depth d = alpha^phi, width w = beta^phi, resolution r = gamma^phi,
where alpha = 1.2, beta = 1.1, gamma = 1.15 came from a grid search at phi = 1 under alpha * beta^2 * gamma^2 ~ 2,
so that the MACs grow by about 2^phi. `compound_scaling(phi)` gives the multipliers and `efficientnet_spec(phi)`
a spec for any phi, e.g. `EfficientNet(efficientnet_spec(1.5))` or, with the strict factory,
`create_model("efficientnet_b0", **efficientnet_overrides(1.5))`.

The registered B1-B7 use the published (width, depth, resolution, dropout) table, not the rule: its width and
depth coefficients are rounded (B1 1.0/1.1, B2 1.1/1.2, B3 1.2/1.4 are phi = 0.5, 1, 2 of the rule to one
decimal), and B4-B7 were tuned beyond it (no single phi gives their three coefficients). torchvision's
B0-B7 use this table too, so parameter counts and state_dicts match it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.init import he_init
from cnnlab.nn.mbconv import MBConv, round_channels

# Table 1 (EfficientNet-B0), one row per stage of MBConv blocks.
B0_ROWS = (
    # expand, kernel, stride, in, out, repeats
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)

# The published coefficients of B0-B7 (the authors' reference code, also torchvision's).
TABLE = {
    # name: (width, depth, resolution, dropout)
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}

# DEVIATION: torchvision evaluates its B2 weights on a 288 crop, not the table's 260; the default input size
# follows the weights that load into these models.
EVAL_CROP = {"efficientnet_b2": 288}


@dataclass(frozen=True)
class EfficientNetSpec:
    """B0's rows scaled by a width and a depth multiplier; `resolution` is the default input size."""

    width: float = 1.0  # channels x width, rounded to multiples of `divisor`
    depth: float = 1.0  # repeats x depth, rounded up
    resolution: int = 224
    dropout: float = 0.2  # before the classifier
    stochastic_depth: float = 0.2  # drop probability of the last block; linear in the block index from 0
    rows: tuple[tuple[int, int, int, int, int, int], ...] = B0_ROWS
    stem_channels: int = 32
    head_channels: int = 1280
    se_ratio: float = 0.25  # SE width relative to the block's input channels
    divisor: int = 8
    bn_eps: float = 1e-3  # the reference (TensorFlow) code's epsilon
    bn_momentum: float = 0.01  # TensorFlow's decay 0.99 in PyTorch's convention


class Scaling(NamedTuple):
    depth: float  # d = alpha^phi
    width: float  # w = beta^phi
    resolution: float  # r = gamma^phi


def compound_scaling(phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15) -> Scaling:
    """Eq. 3: the depth, width and resolution multipliers for compound coefficient `phi`."""
    if min(alpha, beta, gamma) < 1:
        raise ValueError(f"compound scaling needs alpha, beta, gamma >= 1, got {alpha}, {beta}, {gamma}")
    return Scaling(alpha**phi, beta**phi, gamma**phi)


def efficientnet_overrides(
    phi: float, base_resolution: int = 224, dropout: float = 0.2, **rule: float
) -> dict[str, Any]:
    """Spec fields for a new phi (`rule` passes alpha / beta / gamma on to `compound_scaling`).

    Dropout is not part of the rule; the published table raises it from 0.2 to 0.5 with model size.
    """
    d, w, r = compound_scaling(phi, **rule)
    return {"width": w, "depth": d, "resolution": round(base_resolution * r), "dropout": dropout}


def efficientnet_spec(phi: float, base_resolution: int = 224, dropout: float = 0.2, **rule: float) -> EfficientNetSpec:
    """An EfficientNetSpec for compound coefficient `phi` (B0's rows, the paper's BN settings)."""
    return EfficientNetSpec(**efficientnet_overrides(phi, base_resolution, dropout, **rule))


def _published_spec(name: str) -> EfficientNetSpec:
    width, depth, resolution, dropout = TABLE[name]
    big = name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")
    return EfficientNetSpec(
        width=width,
        depth=depth,
        resolution=EVAL_CROP.get(name, resolution),
        dropout=dropout,
        # DEVIATION: torchvision's B0-B4 use PyTorch's BatchNorm defaults (eps 1e-5, momentum 0.1); its
        # B5-B7 and the paper use eps 1e-3, momentum 0.01. Outputs only agree when
        # the epsilon matches the weights'.
        bn_eps=1e-3 if big else 1e-5,
        bn_momentum=0.01 if big else 0.1,
    )


SPECS = {name: _published_spec(name) for name in TABLE}


class EfficientNet(ClassifierNet):
    """Stages: one per row of Table 1 (each a run of MBConv blocks), then the final 1x1 conv to 1280 x width
    channels as the last stage, so that `features(x)` is the map the head pools (as torchvision's
    `features`). Head: pool - dropout - linear."""

    def __init__(self, spec: EfficientNetSpec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if spec.width <= 0 or spec.depth <= 0:
            raise ValueError(f"efficientnet: width and depth must be positive, got {spec.width}, {spec.depth}")
        # The `in` column documents Table 1; a row must start where the previous one ended.
        ins = [row[3] for row in spec.rows]
        outs = [spec.stem_channels] + [row[4] for row in spec.rows[:-1]]
        if ins != outs:
            raise ValueError(f"efficientnet: row input channels {ins} do not follow the stem and rows ({outs})")
        bn = {"bn_eps": spec.bn_eps, "bn_momentum": spec.bn_momentum}

        def scaled(c: int) -> int:
            return round_channels(c * spec.width, spec.divisor)

        ch = scaled(spec.stem_channels)
        self.stem = ConvBNAct(in_chans, ch, 3, stride=2, act=nn.SiLU, **bn)
        repeats = [math.ceil(row[5] * spec.depth) for row in spec.rows]
        total, index, stride = sum(repeats), 0, 2
        stages, infos = [], []
        for (expand, kernel, s, _, c_out, _), n in zip(spec.rows, repeats):
            out, blocks = scaled(c_out), []
            for i in range(n):
                drop = spec.stochastic_depth * index / total  # Huang et al.'s linear decay rule
                blocks.append(
                    MBConv(ch, out, kernel, s if i == 0 else 1, expand, spec.se_ratio, drop, divisor=spec.divisor, **bn)
                )
                ch, index = out, index + 1
            stride *= s
            stages.append(nn.Sequential(*blocks))
            infos.append(StageInfo(f"stages.{len(infos)}", ch, stride))
        head_ch = scaled(spec.head_channels)
        stages.append(ConvBNAct(ch, head_ch, 1, act=nn.SiLU, **bn))
        infos.append(StageInfo(f"stages.{len(infos)}", head_ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.min_input_size = 1  # every conv is "same"-padded: a 1x1 map stays 1x1 at any stride
        self.head = PoolLinearHead(head_ch, num_classes, spec.dropout)
        he_init(self, _uniform_linear)


def _uniform_linear(m: nn.Linear) -> None:
    bound = 1.0 / math.sqrt(m.out_features)  # the reference code's dense initializer
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.zeros_(m.bias)


def _torchvision_keys() -> tuple[tuple[str, str], ...]:
    """torchvision: features.0 = stem, features.1..7 = stages, features.8 = final 1x1 conv, classifier.1 = fc.

    Inside a block, `block` is [expand (conv, bn)], dw (conv, bn), se (fc1, fc2), project (conv, bn); the expand
    conv is absent in stage 1 (expansion 1). Same layout for B0-B7.
    """
    rules = [(r"^features\.0\.0\.", "stem.conv."), (r"^features\.0\.1\.", "stem.bn.")]
    for stage, row in enumerate(B0_ROWS):
        names = ["dw", "se", "project"] if row[0] == 1 else ["expand", "dw", "se", "project"]
        for i, name in enumerate(names):
            src = rf"^features\.{stage + 1}\.(\d+)\.block\.{i}\."
            dst = rf"stages.{stage}.\1.{name}."
            if name == "se":
                rules.append((src, dst))
            else:
                rules += [(src + r"0\.", dst + "conv."), (src + r"1\.", dst + "bn.")]
    last = len(B0_ROWS)
    rules += [
        (rf"^features\.{last + 1}\.0\.", f"stages.{last}.conv."),
        (rf"^features\.{last + 1}\.1\.", f"stages.{last}.bn."),
    ]
    rules.append((r"^classifier\.1\.", "head.fc."))
    return tuple(rules)


def _deviations(name: str) -> tuple[str, ...]:
    found = []
    if SPECS[name].bn_eps != EfficientNetSpec.bn_eps:
        found.append("BatchNorm eps 1e-5, momentum 0.1 (torchvision's B0-B4) instead of the paper's 1e-3, 0.01")
    if name in EVAL_CROP:
        found.append(
            f"default input {EVAL_CROP[name]} (torchvision's eval crop) instead of the table's {TABLE[name][2]}"
        )
    return tuple(found)


_TV = "torchvision's IMAGENET1K_V1 weights metadata (num_params, _ops, acc@1)"
# (params, GMACs at the eval crop, top-1) of torchvision's V1 weights.
_PUBLISHED = {
    "efficientnet_b0": (5_288_548, 0.386, 77.692),
    "efficientnet_b1": (7_794_184, 0.687, 78.642),
    "efficientnet_b2": (9_109_994, 1.088, 80.608),
    "efficientnet_b3": (12_233_232, 1.827, 82.008),
    "efficientnet_b4": (19_341_616, 4.394, 83.384),
    "efficientnet_b5": (30_389_784, 10.266, 83.444),
    "efficientnet_b6": (43_040_704, 19.068, 84.008),
    "efficientnet_b7": (66_347_960, 37.746, 84.122),
}

FAMILY = Family(
    name="efficientnet",
    paper=Paper(
        "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
        "Tan, Le",
        2019,
        arxiv="1905.11946",
        table="Table 1 (B0) and Eq. 3 (compound scaling)",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: EfficientNet(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, spec.resolution, spec.resolution),
    published={n: Published(params=p, gmacs=g, top1=t, source=_TV) for n, (p, g, t) in _PUBLISHED.items()},
    deviations={name: _deviations(name) for name in SPECS},
    torchvision={name: name for name in TABLE},
    torchvision_keys=_torchvision_keys(),
)
