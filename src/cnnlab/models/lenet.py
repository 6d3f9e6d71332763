"""LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document recognition", Fig. 2).

Built as the modern lecture variant: ReLU instead of scaled tanh, max-pooling instead of trainable
subsampling, and a full C3 (every S2 map feeds every C3 map) instead of the paper's partial connection table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.heads import Head


@dataclass(frozen=True)
class LeNetSpec:
    """C1-S2-C3-S4 then the fully connected C5-F6-output of Fig. 2."""

    widths: tuple[int, ...] = (6, 16)  # C1, C3 feature maps
    kernel: int = 5
    fc: tuple[int, ...] = (120, 84)  # C5 (a 5x5 conv on 5x5 maps = a Linear), F6
    act: str = "relu"  # DEVIATION: the paper uses a scaled tanh; "tanh" restores it


SPECS = {"lenet5": LeNetSpec()}

_ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class LeNetHead(Head):
    def __init__(self, in_features: int, fc: tuple[int, ...], num_classes: int, act: type[nn.Module]):
        super().__init__()
        self.flatten = nn.Flatten(1)
        layers: list[nn.Module] = []
        for width in fc:
            layers += [nn.Linear(in_features, width), act()]
            in_features = width
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(self.flatten(x)))


class LeNet5(ClassifierNet):
    def __init__(self, spec: LeNetSpec, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        act = _ACTS[spec.act]
        self.stem = nn.Identity()
        stages, infos, ch, stride = [], [], in_chans, 1
        for i, width in enumerate(spec.widths):
            # DEVIATION: max-pooling replaces the paper's trainable average subsampling (S2, S4).
            stages.append(nn.Sequential(nn.Conv2d(ch, width, spec.kernel), act(), nn.MaxPool2d(2)))
            ch, stride = width, stride * 2
            infos.append(StageInfo(f"stages.{i}", ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.min_input_size = 32  # the head's C5 expects 5x5 maps, i.e. exactly a 32x32 input
        self.head = LeNetHead(ch * 5 * 5, spec.fc, num_classes, act)


FAMILY = Family(
    name="lenet",
    paper=Paper(
        "Gradient-based learning applied to document recognition",
        "LeCun, Bottou, Bengio, Haffner",
        1998,
        table="Fig. 2",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: LeNet5(spec, num_classes, in_chans),
    input_size=lambda name, spec: (1, 32, 32),
    published={"lenet5": Published(params=61_706, source="LeCun et al. 1998, Fig. 2 (ReLU/max-pool, 10 classes)")},
    deviations={
        "lenet5": (
            "ReLU instead of scaled tanh",
            "max-pooling instead of trainable subsampling",
            "C3 fully connected to S2 instead of the paper's connection table",
        )
    },
    default_num_classes=lambda name, spec: 10,
)
