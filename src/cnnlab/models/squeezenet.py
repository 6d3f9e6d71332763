"""SqueezeNet (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB
model size", arXiv:1602.07360, Table 1 and Fig. 2 left).

conv1, then Fire modules (cnnlab.nn.fire) with 3x3 stride-2 max-pools between them, dropout 0.5 after fire9,
and no fully connected layer: conv10, a 1x1 conv to the classes, is followed by ReLU and global average pooling
(the head's `fc` is that conv, so `reset_head` replaces it). Stages start at a pool (strides 4, 8, 16); conv1
is the stem (stride 2). Pools round their output size up, as the authors' Caffe model does.

SqueezeNet 1.1 comes from the authors' repository (github.com/DeepScale/SqueezeNet, "2.4x less computation"):
conv1 has 64 3x3 filters and the pools move earlier (after conv1, fire3, fire5).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.fire import Fire
from cnnlab.nn.heads import Head

Layer = tuple[int, int, int] | str  # a Fire module's (s1x1, e1x1, e3x3), or "M" for a 3x3/2 max-pool

V1_0: tuple[Layer, ...] = (
    "M",  # maxpool1
    (16, 64, 64),  # fire2
    (16, 64, 64),  # fire3
    (32, 128, 128),  # fire4
    "M",  # maxpool4
    (32, 128, 128),  # fire5
    (48, 192, 192),  # fire6
    (48, 192, 192),  # fire7
    (64, 256, 256),  # fire8
    "M",  # maxpool8
    (64, 256, 256),  # fire9
)

V1_1: tuple[Layer, ...] = (
    "M",
    (16, 64, 64),
    (16, 64, 64),
    "M",
    (32, 128, 128),
    (32, 128, 128),
    "M",
    (48, 192, 192),
    (48, 192, 192),
    (64, 256, 256),
    (64, 256, 256),
)


@dataclass(frozen=True)
class SqueezeNetSpec:
    """Table 1: conv1 (out channels, kernel, stride), the Fire/pool sequence, dropout before conv10."""

    conv1: tuple[int, int, int]
    layers: tuple[Layer, ...]
    dropout: float = 0.5  # Sec. 5: dropout 50% after fire9
    # DEVIATION: the paper's Caffe model reads 227x227 crops (conv1: 111x111); torchvision evaluates at 224.
    resolution: int = 224


SPECS = {
    "squeezenet1_0": SqueezeNetSpec((96, 7, 2), V1_0),
    "squeezenet1_1": SqueezeNetSpec((64, 3, 2), V1_1),
}


class SqueezeNetHead(Head):
    """dropout -> conv10 (1x1, the classifier: `fc`) -> ReLU -> global average pool -> flatten."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Conv2d(in_ch, num_classes, 1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.act(self.fc(self.drop(x)))))


def min_input_size(spec: SqueezeNetSpec) -> int:
    """Fire modules keep the size; a ceil-mode 3x3/2 pool needs 2m inputs for m outputs; conv1 (unpadded, kernel
    k, stride s) needs (m - 1) s + k."""
    m = 2 ** spec.layers.count("M")
    _, k, s = spec.conv1
    return (m - 1) * s + k


class SqueezeNet(ClassifierNet):
    def __init__(self, spec: SqueezeNetSpec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if spec.layers[0] != "M":
            raise ValueError("a SqueezeNet layer list starts with the max-pool after conv1 ('M')")
        self.spec = spec
        out, k, s = spec.conv1
        self.stem = nn.Sequential(OrderedDict(conv=nn.Conv2d(in_chans, out, k, s), act=nn.ReLU(inplace=True)))
        stages: list[OrderedDict[str, nn.Module]] = []
        infos, ch, stride, fire = [], out, s, 2  # Fire modules are numbered from 2, as in the paper
        for layer in spec.layers:
            if layer == "M":
                stride *= 2
                stages.append(OrderedDict(pool=nn.MaxPool2d(3, 2, ceil_mode=True)))
                infos.append(StageInfo(f"stages.{len(infos)}", ch, stride))
            else:
                block = Fire(ch, *layer)
                stages[-1][f"fire{fire}"] = block
                ch, fire = block.out_channels, fire + 1
                infos[-1] = StageInfo(infos[-1].name, ch, stride)
        self.stages = nn.Sequential(*(nn.Sequential(layers) for layers in stages))
        self.stage_info = tuple(infos)
        self.min_input_size = min_input_size(spec)
        self.head = SqueezeNetHead(ch, num_classes, spec.dropout)
        _init_weights(self)


def _init_weights(model: SqueezeNet) -> None:
    # conv10 starts small (N(0, 0.01)) so the initial logits are near zero; the rest use Kaiming-uniform.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if m is model.head.fc:
                nn.init.normal_(m.weight, 0.0, 0.01)
            else:
                nn.init.kaiming_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def torchvision_keys_for(spec: SqueezeNetSpec) -> tuple[tuple[str, str], ...]:
    """torchvision numbers one flat `features` list: conv1, relu, then one entry per pool and per Fire module,
    so where a Fire module lands depends on the version: the rules are generated from the layer list."""
    rules = [(r"^features\.0\.", "stem.conv.")]
    stage, fire = -1, 2
    for i, layer in enumerate(spec.layers, start=2):
        if layer == "M":
            stage += 1
        else:
            rules.append((rf"^features\.{i}\.", f"stages.{stage}.fire{fire}."))
            fire += 1
    rules.append((r"^classifier\.1\.", "head.fc."))
    return tuple(rules)


FAMILY = Family(
    name="squeezenet",
    paper=Paper(
        "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
        "Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer",
        2016,
        arxiv="1602.07360",
        table="Table 1; v1.1 from the authors' repository",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: SqueezeNet(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, spec.resolution, spec.resolution),
    published={
        "squeezenet1_0": Published(
            params=1_248_424, gmacs=0.819, top1=58.092, source="torchvision SqueezeNet1_0_Weights.IMAGENET1K_V1"
        ),
        "squeezenet1_1": Published(
            params=1_235_496, gmacs=0.349, top1=58.178, source="torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1"
        ),
    },
    deviations={
        "*": ("evaluated at 224x224 (torchvision) instead of the Caffe model's 227x227 crops",),
    },
    torchvision={name: name for name in SPECS},
    # A function of the built model: the layout differs per version (see torchvision_keys_for).
    torchvision_keys=lambda model: torchvision_keys_for(model.spec),
)
