"""VGG (Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
arXiv:1409.1556, Table 1).

Only 3x3 convs (stride 1, padded by 1) and 2x2 stride-2 max-pools, then fc6, fc7 (4096, dropout 0.5) and the
classifier. A configuration is the paper's column: a list of conv widths and "M" for a pool. Each run of convs
up to a pool is one stage, so the five stages have cumulative strides 2, 4, 8, 16, 32.

The `_bn` variants add BatchNorm after every conv (Ioffe & Szegedy 2015, as torchvision does); they keep the
conv bias, redundant before BN, because torchvision's weights and parameter counts include it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.heads import FCHead
from cnnlab.nn.init import he_init

# Table 1, columns A, B, D, E.
A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
B = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


@dataclass(frozen=True)
class VGGSpec:
    """Table 1: `config` is a column (conv widths, "M" = max-pool); `fc` the hidden FC widths."""

    config: tuple[int | str, ...]
    batch_norm: bool = False  # DEVIATION (the _bn variants): BN after each conv, not in the paper
    fc: tuple[int, ...] = (4096, 4096)
    dropout: float = 0.5  # Sec. 3.1: dropout 0.5 on the first two FC layers
    map_size: int = 7  # pool5 is 7x7 at 224; fc6 reads 512 x 7 x 7
    adaptive_pool: bool = True  # DEVIATION: torchvision average-pools pool5 to 7x7, so any input >= 32 runs
    resolution: int = 224


SPECS = {
    "vgg11": VGGSpec(A),
    "vgg11_bn": VGGSpec(A, batch_norm=True),
    "vgg13": VGGSpec(B),
    "vgg13_bn": VGGSpec(B, batch_norm=True),
    "vgg16": VGGSpec(D),
    "vgg16_bn": VGGSpec(D, batch_norm=True),
    "vgg19": VGGSpec(E),
    "vgg19_bn": VGGSpec(E, batch_norm=True),
}


def conv3x3(in_ch: int, out_ch: int, batch_norm: bool) -> nn.Sequential:
    """conv3-<out_ch> of Table 1 with its ReLU (and BN for the _bn variants); children conv, [bn], act."""
    layers: dict[str, nn.Module] = {"conv": nn.Conv2d(in_ch, out_ch, 3, padding=1)}
    if batch_norm:
        layers["bn"] = nn.BatchNorm2d(out_ch)
    layers["act"] = nn.ReLU(inplace=True)
    return nn.Sequential(OrderedDict(layers))


def min_input_size(spec: VGGSpec) -> int:
    """Padded 3x3 convs keep the size; each 2x2/2 pool needs 2m inputs for m outputs."""
    m = 1 if spec.adaptive_pool else spec.map_size
    return m * 2 ** spec.config.count("M")


class VGG(ClassifierNet):
    def __init__(self, spec: VGGSpec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if spec.config[-1] != "M":
            raise ValueError("a VGG configuration ends with a max-pool ('M')")
        self.spec = spec
        self.stem = nn.Identity()
        stages, infos, blocks, ch, stride = [], [], [], in_chans, 1
        for v in spec.config:
            if v == "M":
                stride *= 2
                stages.append(nn.Sequential(*blocks, nn.MaxPool2d(2, 2)))
                infos.append(StageInfo(f"stages.{len(infos)}", ch, stride))
                blocks = []
            else:
                blocks.append(conv3x3(ch, int(v), spec.batch_norm))
                ch = int(v)
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.min_input_size = min_input_size(spec)
        self.head = FCHead(ch, spec.map_size, spec.fc, num_classes, spec.dropout, adaptive_pool=spec.adaptive_pool)
        # The paper trained A from N(0, 0.01) and initialised deeper nets from it (Sec. 3.1); He init (fan_out)
        # for the convs, as torchvision uses, trains every depth from scratch. FCHead draws the paper's N(0, 0.01).
        he_init(self)


def torchvision_keys_for(spec: VGGSpec) -> tuple[tuple[str, str], ...]:
    """torchvision numbers one flat `features` list (conv, [bn], relu per conv; one entry per pool), so where a
    layer lands depends on the configuration: the rules are generated from it."""
    rules, i, stage, block = [], 0, 0, 0
    for v in spec.config:
        if v == "M":
            i, stage, block = i + 1, stage + 1, 0
            continue
        rules.append((rf"^features\.{i}\.", f"stages.{stage}.{block}.conv."))
        if spec.batch_norm:
            rules.append((rf"^features\.{i + 1}\.", f"stages.{stage}.{block}.bn."))
        i, block = i + (3 if spec.batch_norm else 2), block + 1
    # classifier = [fc6, relu, drop, fc7, relu, drop, fc8]: our head.hidden holds the first six.
    rules += [(r"^classifier\.6\.", "head.fc."), (r"^classifier\.", "head.hidden.")]
    return tuple(rules)


FAMILY = Family(
    name="vgg",
    paper=Paper(
        "Very Deep Convolutional Networks for Large-Scale Image Recognition",
        "Simonyan, Zisserman",
        2014,
        arxiv="1409.1556",
        table="Table 1 (A = vgg11, B = vgg13, D = vgg16, E = vgg19)",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: VGG(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, spec.resolution, spec.resolution),
    published={
        name: Published(params=params, gmacs=gmacs, top1=top1, source="torchvision's IMAGENET1K_V1 weights metadata")
        for name, params, gmacs, top1 in (
            ("vgg11", 132_863_336, 7.609, 69.02),
            ("vgg11_bn", 132_868_840, 7.609, 70.37),
            ("vgg13", 133_047_848, 11.308, 69.928),
            ("vgg13_bn", 133_053_736, 11.308, 71.586),
            ("vgg16", 138_357_544, 15.47, 71.592),
            ("vgg16_bn", 138_365_992, 15.47, 73.36),
            ("vgg19", 143_667_240, 19.632, 72.376),
            ("vgg19_bn", 143_678_248, 19.632, 74.218),
        )
    },
    deviations={
        "*": ("adaptive average pool to 7x7 before fc6 (torchvision), so any input of 32 px or more runs",),
        **{
            f"vgg{d}_bn": ("BatchNorm after every conv (torchvision's _bn variants; not in the paper)",)
            for d in (11, 13, 16, 19)
        },
    },
    torchvision={name: name for name in SPECS},
    # A function of the built model: the layout differs per configuration (see torchvision_keys_for).
    torchvision_keys=lambda model: torchvision_keys_for(model.spec),
)
