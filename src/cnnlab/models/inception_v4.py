"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke, Alemi 2016, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning", arXiv:1602.07261).

Inception-v4 is Fig. 9: stem (Fig. 3), 4 x Inception-A, Reduction-A, 7 x Inception-B, Reduction-B,
3 x Inception-C. Inception-ResNet-v2 is Fig. 15 with the blocks of Figs. 16-19. Reduction-A's k, l, m, n are
Table 1's. Both follow the authors' released TF-slim models, which timm ported: 42,679,816 and 55,843,464
parameters; the blocks' DEVIATION comments (cnnlab/nn/inception_v4.py) list where those depart from the
figures.

Layout: `stem` (stride 8: 35x35x384, or 35x35x320 for Inception-ResNet-v2), `stages` = the 35x35, 17x17 and
8x8 grids, each a Sequential of `reduction` (the grid reduction that opens it, from the second on) and
`blocks`; Inception-ResNet-v2's last stage ends in the release's 1x1 conv to 1536 (`conv7b`). `head` =
global average pool, dropout (keep 0.8, Figs. 9 and 15), FC.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.inception_v4 import (
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionResNetA,
    InceptionResNetB,
    InceptionResNetC,
    InceptionResNetReductionB,
    InceptionResNetStem,
    ReductionA,
    ReductionB,
    Stem,
    conv,
)


@dataclass(frozen=True)
class InceptionV4Spec:
    """Fig. 9 (Inception-v4) / Fig. 15 (Inception-ResNet-v2) and Table 1."""

    kind: Literal["inception", "inception_resnet"]
    depths: tuple[int, int, int]  # blocks on the 35x35, 17x17 and 8x8 grids
    reduction_a: tuple[int, int, int, int]  # Table 1's k, l, m, n
    scales: tuple[float, float, float] = (0.17, 0.10, 0.20)  # residual scaling per grid (Sec. 3.3; Inc.-ResNet)
    dropout: float = 0.2  # "Dropout (keep 0.8)" before the FC


SPECS = {
    "inception_v4": InceptionV4Spec("inception", (4, 7, 3), (192, 224, 256, 384)),
    # DEVIATION: Fig. 15 draws 5 / 10 / 5 residual blocks; the released model (and its 55.8M parameters)
    # has 10 / 20 / 10, the last one without scaling (1.0) or ReLU.
    "inception_resnet_v2": InceptionV4Spec("inception_resnet", (10, 20, 10), (256, 256, 384, 384)),
}


def _grids(spec: InceptionV4Spec, in_chans: int) -> tuple[nn.Module, list, list]:
    """The stem, then per grid: the reduction that opens it (None for the first) and its block factory."""
    if spec.kind == "inception":
        blocks = [lambda i: InceptionA(384), lambda i: InceptionB(1024), lambda i: InceptionC(1536)]
        return Stem(in_chans), [None, ReductionA(384, *spec.reduction_a), ReductionB(1024)], blocks
    a, b, c = spec.scales
    last = spec.depths[2] - 1
    blocks = [
        lambda i: InceptionResNetA(320, a),
        lambda i: InceptionResNetB(1088, b),
        lambda i: InceptionResNetC(2080, c) if i < last else InceptionResNetC(2080, 1.0, act=False),
    ]
    reductions = [None, ReductionA(320, *spec.reduction_a), InceptionResNetReductionB(1088)]
    return InceptionResNetStem(in_chans), reductions, blocks


class InceptionV4(ClassifierNet):
    def __init__(self, spec: InceptionV4Spec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        self.stem, reductions, block_fns = _grids(spec, in_chans)
        ch, stride = self.stem.out_channels, 8
        stages, infos = [], []
        for i, (reduction, make, depth) in enumerate(zip(reductions, block_fns, spec.depths)):
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            if reduction is not None:
                parts["reduction"] = reduction
                ch, stride = reduction.out_channels, stride * 2
            parts["blocks"] = nn.Sequential(*[make(j) for j in range(depth)])
            ch = parts["blocks"][-1].out_channels
            if spec.kind == "inception_resnet" and i == len(spec.depths) - 1:
                parts["conv7b"] = conv(ch, 1536, 1)
                ch = 1536
            stages.append(nn.Sequential(parts))
            infos.append(StageInfo(f"stages.{i}", ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.head = PoolLinearHead(ch, num_classes, dropout=spec.dropout)
        # Five unpadded stride-2 layers and two unpadded 3x3s: 75 px leave a 1x1 map for the head (checked
        # against a raw forward in tests/models/test_inception.py).
        self.min_input_size = 75


def _timm_keys() -> tuple[tuple[str, str], ...]:
    """timm's inception_v4 (flat `features.N`) and inception_resnet_v2 (TF-slim names) onto cnnlab's layout."""
    rules = [(r"^last_linear\.", "head.fc."), (r"^classif\.", "head.fc.")]
    # inception_v4: features.0-5 are the stem; then each grid's reduction (from the second) and blocks.
    stem = ("conv1a", "conv2a", "conv2b", "mixed3a", "mixed4a", "mixed5a")
    rules += [(rf"^features\.{n}\.", f"stem.{name}.") for n, name in enumerate(stem)]
    n = len(stem)
    for s, depth in enumerate(SPECS["inception_v4"].depths):
        if s > 0:
            rules.append((rf"^features\.{n}\.", f"stages.{s}.reduction."))
            n += 1
        for j in range(depth):
            rules.append((rf"^features\.{n}\.", f"stages.{s}.blocks.{j}."))
            n += 1
    # inception_resnet_v2: its final block8 (no ReLU) is our last block of the 8x8 grid.
    last = SPECS["inception_resnet_v2"].depths[2] - 1
    rules += [
        (r"^conv2d_7b\.", "stages.2.conv7b."),
        (r"^conv2d_(\d[ab])\.", r"stem.conv\1."),
        (r"^mixed_5b\.", "stem.mixed5b."),
        (r"^mixed_6a\.", "stages.1.reduction."),
        (r"^mixed_7a\.", "stages.2.reduction."),
        (r"^block8\.conv2d\.", f"stages.2.blocks.{last}.expand."),
        (r"^block8\.", f"stages.2.blocks.{last}."),
    ]
    for s, name in enumerate(("repeat", "repeat_1", "repeat_2")):
        rules += [
            (rf"^{name}\.(\d+)\.conv2d\.", rf"stages.{s}.blocks.\1.expand."),
            (rf"^{name}\.", f"stages.{s}.blocks."),
        ]
    return tuple(rules)


FAMILY = Family(
    name="inception_v4",
    paper=Paper(
        "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
        "Szegedy, Ioffe, Vanhoucke, Alemi",
        2016,
        arxiv="1602.07261",
        table="Figs. 3-9, 15-19; Table 1",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: InceptionV4(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, 299, 299),
    published={
        "inception_v4": Published(params=42_679_816, source="timm inception_v4's parameter count"),
        "inception_resnet_v2": Published(params=55_843_464, source="timm inception_resnet_v2's parameter count"),
    },
    deviations={
        "inception_v4": ("1x7 / 7x1 order and Inception-C's 3x1-then-1x3 as in the released model, not Figs. 3, 5, 6",),
        "inception_resnet_v2": (
            "Inception-v3-style stem + Mixed_5b (320 channels) as released, not the Fig. 3 stem",
            "320 / 1088 / 2080 channels as released, not the figures' 384 / 1154 / 2048",
            "10 / 20 / 10 residual blocks as released, not Fig. 15's 5 / 10 / 5",
            "a final 1x1 conv to 1536 channels before pooling, as released",
        ),
    },
    timm={"inception_v4": "inception_v4", "inception_resnet_v2": "inception_resnet_v2"},
    timm_keys=_timm_keys(),
)
