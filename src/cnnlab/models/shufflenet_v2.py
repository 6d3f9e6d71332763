"""ShuffleNet V2 (Ma, Zhang, Zheng, Sun 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", arXiv:1807.11164, Table 5).

Conv1 (3x3, stride 2) and a 3x3 max-pool, then Stage2-4 of ShuffleNet V2 units (Fig. 3c/d; the first unit of a
stage has stride 2 and doubles the channels), Conv5 (1x1), global pooling and the FC layer. The four widths
0.5x / 1x / 1.5x / 2x are the columns of Table 5; torchvision's `shufflenet_v2_x*` are the same networks.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.init import he_init, normal_linear
from cnnlab.nn.shuffle import ShuffleV2Block


@dataclass(frozen=True)
class ShuffleNetV2Spec:
    """Table 5: output channels of Stage2-4 and Conv5; each stage repeats 1 stride-2 unit + (n - 1) stride-1."""

    widths: tuple[int, ...]  # Stage2, Stage3, Stage4
    head_channels: int = 1024  # Conv5
    repeats: tuple[int, ...] = (4, 8, 4)
    stem_channels: int = 24  # Conv1 (the table's 24 at every width)
    dropout: float = 0.0  # Table 5 has none; Sec. 4 adds dropout only to the larger models' variants
    resolution: int = 224


SPECS = {
    # name: Stage2-4 widths, Conv5
    "shufflenet_v2_x0_5": ShuffleNetV2Spec((48, 96, 192)),
    "shufflenet_v2_x1_0": ShuffleNetV2Spec((116, 232, 464)),
    "shufflenet_v2_x1_5": ShuffleNetV2Spec((176, 352, 704)),
    "shufflenet_v2_x2_0": ShuffleNetV2Spec((244, 488, 976), head_channels=2048),
}


class ShuffleNetV2(ClassifierNet):
    """Stem = Conv1 + MaxPool; stages = Stage2, Stage3, Stage4, Conv5 (so `features(x)` is the pooled map)."""

    def __init__(self, spec: ShuffleNetV2Spec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if len(spec.widths) != len(spec.repeats):
            raise ValueError(f"shufflenet_v2: {len(spec.widths)} widths for {len(spec.repeats)} stages")
        ch = spec.stem_channels
        self.stem = nn.Sequential(
            OrderedDict(conv1=ConvBNAct(in_chans, ch, 3, stride=2), maxpool=nn.MaxPool2d(3, 2, padding=1))
        )
        stride = 4
        stages, infos = [], []
        for width, n in zip(spec.widths, spec.repeats):
            blocks = [ShuffleV2Block(ch, width, 2)] + [ShuffleV2Block(width, width, 1) for _ in range(n - 1)]
            ch, stride = width, stride * 2
            stages.append(nn.Sequential(*blocks))
            infos.append(StageInfo(f"stages.{len(infos)}", ch, stride))
        stages.append(ConvBNAct(ch, spec.head_channels, 1))
        infos.append(StageInfo(f"stages.{len(infos)}", spec.head_channels, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.min_input_size = 1  # padded convs and the padded max-pool keep a 1x1 map 1x1
        self.head = PoolLinearHead(spec.head_channels, num_classes, spec.dropout)
        he_init(self, normal_linear(0.01))


def _torchvision_keys() -> tuple[tuple[str, str], ...]:
    """torchvision: conv1 (conv, bn), stage2-4, conv5 (conv, bn), fc. A unit's branch1 is [dw conv, bn, pw conv,
    bn, relu] and branch2 [pw conv, bn, relu, dw conv, bn, pw conv, bn, relu]."""
    inner = {
        "branch1.0.": "branch1.dw.conv.",
        "branch1.1.": "branch1.dw.bn.",
        "branch1.2.": "branch1.pw.conv.",
        "branch1.3.": "branch1.pw.bn.",
        "branch2.0.": "branch2.pw1.conv.",
        "branch2.1.": "branch2.pw1.bn.",
        "branch2.3.": "branch2.dw.conv.",
        "branch2.4.": "branch2.dw.bn.",
        "branch2.5.": "branch2.pw2.conv.",
        "branch2.6.": "branch2.pw2.bn.",
    }
    rules = [(r"^conv1\.0\.", "stem.conv1.conv."), (r"^conv1\.1\.", "stem.conv1.bn.")]
    for stage in range(3):
        for src, dst in inner.items():
            rules.append((rf"^stage{stage + 2}\.(\d+)\." + re.escape(src), rf"stages.{stage}.\1.{dst}"))
    rules += [(r"^conv5\.0\.", "stages.3.conv."), (r"^conv5\.1\.", "stages.3.bn."), (r"^fc\.", "head.fc.")]
    return tuple(rules)


_TV = "torchvision's IMAGENET1K_V1 weights metadata (num_params, _ops, acc@1)"
_PUBLISHED = {
    # params, GMACs at 224, top-1 of torchvision's V1 weights
    "shufflenet_v2_x0_5": (1_366_792, 0.04, 60.552),
    "shufflenet_v2_x1_0": (2_278_604, 0.145, 69.362),
    "shufflenet_v2_x1_5": (3_503_624, 0.296, 72.996),
    "shufflenet_v2_x2_0": (7_393_996, 0.583, 76.23),
}

FAMILY = Family(
    name="shufflenet_v2",
    paper=Paper(
        "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
        "Ma, Zhang, Zheng, Sun",
        2018,
        arxiv="1807.11164",
        table="Table 5",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: ShuffleNetV2(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, spec.resolution, spec.resolution),
    published={n: Published(params=p, gmacs=g, top1=t, source=_TV) for n, (p, g, t) in _PUBLISHED.items()},
    torchvision={name: name for name in SPECS},
    torchvision_keys=_torchvision_keys(),
)
