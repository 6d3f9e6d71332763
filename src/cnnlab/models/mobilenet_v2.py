"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
arXiv:1801.04381, Table 2).

A 3x3 conv, seven rows of inverted residual bottlenecks (Table 1 / Fig. 3b: expand by t, depthwise, linear
projection), a 1x1 conv to 1280 channels, global pooling and the classifier. torchvision's `mobilenet_v2` is the
same network and its state_dict loads through `torchvision_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.init import he_init, normal_linear
from cnnlab.nn.mbconv import InvertedResidual, round_channels

TABLE2 = (
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclass(frozen=True)
class MobileNetV2Spec:
    """Table 2: t = expansion factor, c = output channels, n = repeats, s = stride of the first repeat."""

    rows: tuple[tuple[int, int, int, int], ...] = TABLE2
    stem_channels: int = 32
    head_channels: int = 1280  # the final 1x1 conv; kept at 1280 for width < 1 (Sec. 6.1)
    width: float = 1.0  # width multiplier (Sec. 6.1); channels are rounded to multiples of `divisor`
    divisor: int = 8
    dropout: float = 0.2  # DEVIATION: the paper's Table 2 has no dropout; torchvision's recipe uses 0.2
    resolution: int = 224


SPECS = {"mobilenet_v2": MobileNetV2Spec()}


class MobileNetV2(ClassifierNet):
    """Stages: one per row of Table 2, then the 1x1 "conv2d 1x1, 1280" as the last stage, so that `features(x)`
    returns the same 1280-channel map as torchvision's `features`. The head is pool - dropout - linear (the
    paper's final "conv2d 1x1, k" on a 1x1 map is that linear layer)."""

    def __init__(self, spec: MobileNetV2Spec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        ch = round_channels(spec.stem_channels * spec.width, spec.divisor)
        self.stem = ConvBNAct(in_chans, ch, 3, stride=2, act=nn.ReLU6)
        stride = 2
        stages, infos = [], []
        for t, c, n, s in spec.rows:
            out = round_channels(c * spec.width, spec.divisor)
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(ch, out, s if i == 0 else 1, t))
                ch = out
            stride *= s
            stages.append(nn.Sequential(*blocks))
            infos.append(StageInfo(f"stages.{len(infos)}", ch, stride))
        head_ch = round_channels(spec.head_channels * max(1.0, spec.width), spec.divisor)
        stages.append(ConvBNAct(ch, head_ch, 1, act=nn.ReLU6))
        infos.append(StageInfo(f"stages.{len(infos)}", head_ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.min_input_size = 1  # padded 3x3 convs keep a 1x1 map 1x1 at any stride
        self.head = PoolLinearHead(head_ch, num_classes, spec.dropout)
        he_init(self, normal_linear(0.01))


def _torchvision_keys(spec: MobileNetV2Spec) -> tuple[tuple[str, str], ...]:
    """torchvision keeps one flat `features` list: 0 = stem, 1..17 = blocks, 18 = the 1x1 conv to 1280.

    Inside a block, `conv` is [expand (conv, bn)], dw (conv, bn), project conv, project bn.
    """
    rules = [(r"^features\.0\.0\.", "stem.conv."), (r"^features\.0\.1\.", "stem.bn.")]
    k = 1
    for stage, (t, _, n, _) in enumerate(spec.rows):
        names = ["dw", "project"] if t == 1 else ["expand", "dw", "project"]
        for block in range(n):
            dst = f"stages.{stage}.{block}."
            src = rf"^features\.{k}\.conv\."
            for i, name in enumerate(names[:-1]):
                rules += [(rf"{src}{i}\.0\.", f"{dst}{name}.conv."), (rf"{src}{i}\.1\.", f"{dst}{name}.bn.")]
            j = len(names) - 1
            rules += [(rf"{src}{j}\.", f"{dst}project.conv."), (rf"{src}{j + 1}\.", f"{dst}project.bn.")]
            k += 1
    last = len(spec.rows)
    rules += [(rf"^features\.{k}\.0\.", f"stages.{last}.conv."), (rf"^features\.{k}\.1\.", f"stages.{last}.bn.")]
    rules.append((r"^classifier\.1\.", "head.fc."))
    return tuple(rules)


FAMILY = Family(
    name="mobilenet_v2",
    paper=Paper(
        "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
        "Sandler, Howard, Zhu, Zhmoginov, Chen",
        2018,
        arxiv="1801.04381",
        table="Table 2",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: MobileNetV2(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, spec.resolution, spec.resolution),
    published={
        "mobilenet_v2": Published(
            params=3_504_872, gmacs=0.301, top1=71.878, source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 metadata"
        )
    },
    deviations={"*": ("dropout 0.2 before the classifier (torchvision's recipe; not in Table 2)",)},
    torchvision={"mobilenet_v2": "mobilenet_v2"},
    torchvision_keys=_torchvision_keys(SPECS["mobilenet_v2"]),
)
