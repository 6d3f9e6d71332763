"""Lab nets: small VGG-style CIFAR networks whose conv unit is the thing a claim varies (`cnnlab reproduce`).

No paper has these nets; they are the smallest frame in which the lecture's architecture claims can be tested
one at a time. The frame follows VGG (Simonyan & Zisserman 2014, arXiv:1409.1556, Sec. 2): a 3x3 stem conv,
stages of `depth` units at one width, a 2x2 max-pool before every stage but the first, widths doubling per
stage, then global average pooling and one FC layer. Every unit maps its input to `width` channels at the same
spatial size, so two nets that differ only in their unit have the same output shape everywhere. Units:

* "KxK" (e.g. "3x3", "5x5", "7x7"): one K x K conv-BN-ReLU;
* "Nx(3x3)" (e.g. "2x(3x3)", "3x(3x3)"): N stacked 3x3 conv-BN-ReLU, receptive field 2N+1 with 9N C^2 weights
  (VGG Sec. 2.3: three 3x3 see 7x7 with 27 C^2 weights instead of 49 C^2);
* "1xK+Kx1": a 1 x K conv then a K x 1 conv (Inception-v3 Sec. 3.2, Fig. 6), 2K C^2 weights instead of K^2 C^2;
* "bottleneck": 1x1 to width / 4, 3x3, 1x1 back to width (He et al. 2015, Fig. 5 right), without the shortcut,
  so it is compared with a plain 3x3 unit as a block, not as a residual net.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, StageInfo
from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.init import he_init, normal_linear

_SQUARE = re.compile(r"^(\d+)x\1$")  # "7x7"
_STACK = re.compile(r"^(\d+)x\(3x3\)$")  # "3x(3x3)"
_ASYM = re.compile(r"^1x(\d+)\+\1x1$")  # "1x3+3x1"
UNITS = ("KxK", "Nx(3x3)", "1xK+Kx1", "bottleneck")  # the forms unit names take, for error messages


@dataclass(frozen=True)
class LabNetSpec:
    widths: tuple[int, ...] = (32, 64, 128)  # per stage
    units: tuple[str, ...] = ("3x3", "3x3", "3x3")  # per stage: which conv unit its layers are
    depth: int = 2  # units per stage
    stem_channels: int = 32
    bottleneck_ratio: int = 4  # He et al.'s 1x1 reduces to width / 4


SPECS = {"labnet": LabNetSpec()}


def unit(kind: str, in_ch: int, out_ch: int, ratio: int = 4) -> nn.Sequential:
    """One unit (see the module docstring): `in_ch` -> `out_ch` channels at the same spatial size."""
    layers: list[tuple[str, nn.Module]]
    if m := _SQUARE.match(kind):
        k = int(m[1])
        if k % 2 == 0:
            raise ValueError(f"labnet: unit {kind!r} needs an odd kernel to keep the map size")
        layers = [("conv", ConvBNAct(in_ch, out_ch, k))]
    elif m := _STACK.match(kind):
        n = int(m[1])
        if n < 1:
            raise ValueError(f"labnet: unit {kind!r} needs at least one 3x3 conv")
        layers = [(f"conv{i + 1}", ConvBNAct(in_ch if i == 0 else out_ch, out_ch, 3)) for i in range(n)]
    elif m := _ASYM.match(kind):
        k = int(m[1])
        if k % 2 == 0:
            raise ValueError(f"labnet: unit {kind!r} needs an odd kernel to keep the map size")
        # Inception-v3 Fig. 6 has the 1 x n and n x 1 both at the output width and a ReLU after each.
        layers = [("conv1xk", ConvBNAct(in_ch, out_ch, (1, k))), ("convkx1", ConvBNAct(out_ch, out_ch, (k, 1)))]
    elif kind == "bottleneck":
        mid = max(1, out_ch // ratio)
        layers = [
            ("reduce", ConvBNAct(in_ch, mid, 1)),
            ("conv", ConvBNAct(mid, mid, 3)),
            ("restore", ConvBNAct(mid, out_ch, 1)),
        ]
    else:
        raise ValueError(f"labnet: unknown unit {kind!r}; units are {', '.join(UNITS)} (e.g. '3x(3x3)', '1x3+3x1')")
    return nn.Sequential(OrderedDict(layers))


class LabNet(ClassifierNet):
    def __init__(self, spec: LabNetSpec, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if len(spec.units) != len(spec.widths):
            raise ValueError(f"labnet: {len(spec.widths)} widths but {len(spec.units)} units; give one unit per stage")
        if spec.depth < 1:
            raise ValueError(f"labnet: depth must be at least 1, got {spec.depth}")
        self.stem = ConvBNAct(in_chans, spec.stem_channels, 3)
        ch, stride, stages, infos = spec.stem_channels, 1, [], []
        for i, (width, kind) in enumerate(zip(spec.widths, spec.units)):
            blocks: dict[str, nn.Module] = {}
            if i > 0:
                blocks["pool"] = nn.MaxPool2d(2)
                stride *= 2
            for j in range(spec.depth):
                blocks[f"unit{j + 1}"] = unit(kind, ch, width, spec.bottleneck_ratio)
                ch = width
            stages.append(nn.Sequential(OrderedDict(blocks)))
            infos.append(StageInfo(f"stages.{i}", ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.min_input_size = stride  # each pool needs a map of at least 2x2
        self.head = PoolLinearHead(ch, num_classes)
        he_init(self, normal_linear(0.01))


FAMILY = Family(
    name="labnet",
    paper=Paper(
        "Very Deep Convolutional Networks for Large-Scale Image Recognition (the frame; the units are the claims')",
        "Simonyan, Zisserman",
        2014,
        arxiv="1409.1556",
        table="Sec. 2",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: LabNet(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, 32, 32),
    deviations={
        "*": (
            "not a published network: a VGG-style frame for CIFAR-sized inputs, built for cnnlab reproduce",
            "BatchNorm after every conv and global average pooling before one FC layer (VGG has neither)",
        )
    },
    default_num_classes=lambda name, spec: 10,
)
