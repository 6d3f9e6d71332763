"""Inception-v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer Vision",
arXiv:1512.00567, Table 1 with Figs. 5, 6, 7 and 10), as released by the authors and ported by torchvision.

Layout: `stem` = Conv2d_1a .. max-pool (299 -> 35x35x192, stride 8), `stages` = Mixed 5b-5d (35x35) /
6a-6e (17x17, 6a reduces) / 7a-7c (8x8, 7a reduces), `head` = global average pool, dropout, FC. One
auxiliary classifier reads the output of 6e (Sec. 4: it acts as a regulariser) in training mode.

27,161,264 parameters with the auxiliary head (torchvision's published count), 5.713 GMACs at 299 px.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

from torch import nn

from cnnlab.models.base import AuxClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.inception import (
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionV3Aux,
    TransformInput,
)

# One tuple per stage: (name, block, argument): A's pool features, C's 7x7 inner width.
TABLE = (
    (("5b", "A", 32), ("5c", "A", 64), ("5d", "A", 64)),
    (("6a", "B", 0), ("6b", "C", 128), ("6c", "C", 160), ("6d", "C", 160), ("6e", "C", 192)),
    (("7a", "D", 0), ("7b", "E", 0), ("7c", "E", 0)),
)
_BLOCKS = {
    "A": lambda c, arg, conv: InceptionA(c, arg, conv),
    "B": lambda c, arg, conv: InceptionB(c, conv),
    "C": lambda c, arg, conv: InceptionC(c, arg, conv),
    "D": lambda c, arg, conv: InceptionD(c, conv),
    "E": lambda c, arg, conv: InceptionE(c, conv),
}


@dataclass(frozen=True)
class InceptionV3Spec:
    """Szegedy et al. 2015, Table 1 in the form of the released model."""

    modules: tuple[tuple[tuple[str, str, int], ...], ...] = TABLE
    aux_logits: bool = True
    aux_tap: str = "6e"
    dropout: float = 0.5
    transform_input: bool = False  # torchvision's re-normalisation for Google's TF weights (off by default)


SPECS = {"inception_v3": InceptionV3Spec()}


class InceptionV3(AuxClassifierNet):
    def __init__(self, spec: InceptionV3Spec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if spec.transform_input and in_chans != 3:
            raise ValueError(f"transform_input re-normalises RGB images; got in_chans={in_chans}")
        conv = partial(ConvBNAct, bn_eps=1e-3)
        stem: OrderedDict[str, nn.Module] = OrderedDict()
        if spec.transform_input:
            stem["transform"] = TransformInput()
        # DEVIATION: after the first pool Table 1 lists 3x3 convs (80; 192 with stride 2; 288); the release
        # (and its weights) has a 1x1 (80), a 3x3 (192) and a 3x3/2 max-pool instead.
        stem["conv1a"] = conv(in_chans, 32, 3, stride=2, padding=0)
        stem["conv2a"] = conv(32, 32, 3, padding=0)
        stem["conv2b"] = conv(32, 64, 3)
        stem["pool1"] = nn.MaxPool2d(3, stride=2)
        stem["conv3b"] = conv(64, 80, 1)
        stem["conv4a"] = conv(80, 192, 3, padding=0)
        stem["pool2"] = nn.MaxPool2d(3, stride=2)
        self.stem = nn.Sequential(stem)

        ch, stride = 192, 8
        stages, infos, tap, tap_ch = [], [], "", 0
        for i, rows in enumerate(spec.modules):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for j, (name, kind, arg) in enumerate(rows):
                if kind in ("B", "D"):
                    if j != 0:  # a reduction opens its stage, so that stage_info's strides hold
                        raise ValueError(f"grid reduction {name} must open its stage")
                    stride *= 2
                block = _BLOCKS[kind](ch, arg, conv)
                blocks[f"mixed{name}"] = block
                ch = block.out_channels
                if name == spec.aux_tap:
                    tap, tap_ch = f"{i}.mixed{name}", ch
            stages.append(nn.Sequential(blocks))
            infos.append(StageInfo(f"stages.{i}", ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.head = PoolLinearHead(ch, num_classes, dropout=spec.dropout)
        self.aux_heads = nn.ModuleDict()
        self.aux_taps = {}
        if spec.aux_logits:
            if not tap:
                raise ValueError(f"aux_tap '{spec.aux_tap}' names no block (blocks: 5b-5d, 6a-6e, 7a-7c)")
            self.aux_heads["aux1"] = InceptionV3Aux(tap_ch, num_classes, conv)
            self.aux_taps["aux1"] = tap
        # The main path reaches the head from 75 px (torchvision's min_size). The aux head's 5x5/3 pool and
        # unpadded 5x5 conv need the 17x17 map of a 299 px input, so a training-mode forward (which runs it)
        # needs 299; eval mode (no aux head) and aux_logits=False take 75. All found by raw forwards of every
        # size on meta, and checked so in test_inception.py and tests/test_first_contact_cli.py.
        self.min_input_size = 299 if spec.aux_logits else 75
        self.min_eval_input_size = 75


TV_KEYS = (
    (r"^fc\.", "head.fc."),
    (r"^AuxLogits\.", "aux_heads.aux1."),
    (r"^Conv2d_(\d[ab])_\dx\d\.", r"stem.conv\1."),
    (r"^Mixed_5([b-d])\.", r"stages.0.mixed5\1."),
    (r"^Mixed_6([a-e])\.", r"stages.1.mixed6\1."),
    (r"^Mixed_7([a-c])\.", r"stages.2.mixed7\1."),
)

FAMILY = Family(
    name="inception_v3",
    paper=Paper(
        "Rethinking the Inception Architecture for Computer Vision",
        "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna",
        2015,
        arxiv="1512.00567",
        table="Table 1; Figs. 5-7, 10",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: InceptionV3(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, 299, 299),
    published={
        "inception_v3": Published(
            params=27_161_264,
            gmacs=5.713,
            top1=77.294,
            source="torchvision Inception_V3_Weights.IMAGENET1K_V1 (params include the aux head)",
        )
    },
    deviations={
        "inception_v3": (
            "stem as released (1x1-80, 3x3-192, max-pool) instead of Table 1's 3x3 convs after the first pool",
            "35x35 modules keep a 5x5 branch next to the double 3x3 of Fig. 5",
        )
    },
    torchvision={"inception_v3": "inception_v3"},
    torchvision_keys=TV_KEYS,
)
