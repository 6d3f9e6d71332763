"""GoogLeNet (Szegedy et al. 2014, "Going deeper with convolutions", arXiv:1409.4842, Table 1).

Two variants of one table:

- `googlenet`: torchvision's port of the TF re-implementation: BatchNorm after every conv, 3x3 convs in the
  "5x5" branch, a 2x2 max-pool before 5a, adaptive 4x4 pooling in the auxiliary heads, dropout 0.2.
  6,624,904 parameters without its two auxiliary heads (torchvision's published figure), 1.498 GMACs.
- `googlenet_paper`: Table 1 as printed: true 5x5 branches, conv biases and no BN, local response
  normalisation after the first pool and after conv3, 3x3/2 max-pools throughout, dropout 0.4, and
  auxiliary heads AvgPool(5x5, s3) - 1x1 conv (128) - FC (1024) - dropout 0.7 - FC.

Layout: `stem` = conv1 .. pool2 (stride 8, 192 channels), `stages` = inception 3a-3b / max-pool + 4a-4e /
max-pool + 5a-5b (strides 8, 16, 32), `head` = global average pool, dropout, FC. The auxiliary heads read
the outputs of 4a and 4d and run in training mode only (Sec. 5); both variants build them by default, as
the paper trains with them; `aux_logits=False` drops them.

Max-pools use ceil mode, as the original Caffe model did: that is what makes Table 1's 112-56-28-14-7 sizes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Literal

from torch import nn

from cnnlab.models.base import AuxClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.inception import GoogLeNetAux, Inception, TransformInput

# Table 1, one tuple per stage: name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
TABLE1 = (
    (("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64)),
    (
        ("4a", 192, 96, 208, 16, 48, 64),
        ("4b", 160, 112, 224, 24, 64, 64),
        ("4c", 128, 128, 256, 24, 64, 64),
        ("4d", 112, 144, 288, 32, 64, 64),
        ("4e", 256, 160, 320, 32, 128, 128),
    ),
    (("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128)),
)


@dataclass(frozen=True)
class GoogLeNetSpec:
    """Szegedy et al. 2014, Table 1; the defaults are torchvision's port, each departure a field."""

    modules: tuple[tuple[tuple[str, int, int, int, int, int, int], ...], ...] = TABLE1
    kernel_5x5: int = 3  # DEVIATION: torchvision's port uses 3x3 in the "5x5" branch; the paper 5x5
    batch_norm: bool = True  # DEVIATION: BN (eps 1e-3) after every conv; the paper (2014) has none
    lrn: bool = False  # the paper's local response normalisation after pool1 and conv3
    last_pool_kernel: int = 2  # DEVIATION: torchvision pools 2x2/2 before 5a; the paper 3x3/2
    aux_logits: bool = True  # the two auxiliary classifiers on 4a and 4d (training mode only)
    aux_taps: tuple[str, ...] = ("4a", "4d")
    aux_pool: Literal["adaptive", "paper"] = "adaptive"  # torchvision: adaptive 4x4; paper: 5x5/3 avg-pool
    aux_dropout: float = 0.7
    dropout: float = 0.2  # DEVIATION: torchvision 0.2; the paper 0.4
    transform_input: bool = False  # torchvision's re-normalisation for Google's TF weights (off by default)
    # DEVIATION (a CIFAR variant, not the paper's): "cifar" replaces the stride-8 stem (7x7/2, pools, 3x3) by one
    # 3x3 conv at stride 1 with `stem_channels` outputs, so 32 px inputs reach 3a at 32x32, 4a at 16x16 and 5a at
    # 8x8, as 224 px inputs reach them at 28, 14 and 7; with a narrower `modules` table it is what
    # `cnnlab reproduce aux-heads` trains.
    stem: Literal["imagenet", "cifar"] = "imagenet"
    stem_channels: int = 192  # the stem's output width (192 in Table 1)


SPECS = {
    "googlenet": GoogLeNetSpec(),
    "googlenet_paper": GoogLeNetSpec(
        kernel_5x5=5, batch_norm=False, lrn=True, last_pool_kernel=3, aux_pool="paper", dropout=0.4
    ),
}


def _lrn() -> nn.LocalResponseNorm:
    # The paper gives no constants; these are the BVLC Caffe GoogLeNet's (size 5, alpha 1e-4, beta 0.75).
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class GoogLeNet(AuxClassifierNet):
    def __init__(self, spec: GoogLeNetSpec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if spec.transform_input and in_chans != 3:
            raise ValueError(f"transform_input re-normalises RGB images; got in_chans={in_chans}")
        conv = partial(ConvBNAct, norm=spec.batch_norm, bn_eps=1e-3)
        pool = partial(nn.MaxPool2d, 3, stride=2, ceil_mode=True)
        if spec.stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be imagenet or cifar, got '{spec.stem}'")
        if spec.stem_channels < 1:
            raise ValueError(f"stem_channels must be positive, got {spec.stem_channels}")
        stem: OrderedDict[str, nn.Module] = OrderedDict()
        if spec.transform_input:
            stem["transform"] = TransformInput()
        if spec.stem == "cifar":
            stem["conv1"] = conv(in_chans, spec.stem_channels, 3)
        else:
            stem["conv1"] = conv(in_chans, 64, 7, stride=2)
            stem["pool1"] = pool()
            if spec.lrn:
                stem["lrn1"] = _lrn()
            stem["conv2"] = conv(64, 64, 1)
            stem["conv3"] = conv(64, spec.stem_channels, 3)
            if spec.lrn:
                stem["lrn2"] = _lrn()
            stem["pool2"] = pool()
        self.stem = nn.Sequential(stem)

        ch, stride = spec.stem_channels, 1 if spec.stem == "cifar" else 8
        stages, infos, tap_channels = [], [], {}
        for i, rows in enumerate(spec.modules):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            if i > 0:
                last = i == len(spec.modules) - 1
                blocks["pool"] = nn.MaxPool2d(spec.last_pool_kernel if last else 3, stride=2, ceil_mode=True)
                stride *= 2
            for name, *widths in rows:
                block = Inception(ch, *widths, conv=conv, kernel_5x5=spec.kernel_5x5)
                blocks[f"inception{name}"] = block
                ch = block.out_channels
                tap_channels[name] = (f"{i}.inception{name}", ch)
            stages.append(nn.Sequential(blocks))
            infos.append(StageInfo(f"stages.{i}", ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.head = PoolLinearHead(ch, num_classes, dropout=spec.dropout)

        self.aux_heads = nn.ModuleDict()
        self.aux_taps = {}
        if spec.aux_logits:
            for k, tap in enumerate(spec.aux_taps, start=1):
                if tap not in tap_channels:
                    raise ValueError(f"aux tap '{tap}' names no module (modules: {', '.join(tap_channels)})")
                path, tap_ch = tap_channels[tap]
                if spec.aux_pool == "paper":
                    # DEVIATION: the adaptive pool after the paper's 5x5/3 is the identity at 224 (4x4 already)
                    # and lets other input sizes reach the FC's 4x4x128 inputs.
                    aux_pool: nn.Module = nn.Sequential(nn.AvgPool2d(5, stride=3), nn.AdaptiveAvgPool2d(4))
                else:
                    aux_pool = nn.AdaptiveAvgPool2d(4)
                self.aux_heads[f"aux{k}"] = GoogLeNetAux(tap_ch, num_classes, conv, aux_pool, spec.aux_dropout)
                self.aux_taps[f"aux{k}"] = path
        # Smallest inputs (checked against a raw forward in tests/models/test_inception.py): the main path
        # needs every pool to see a map at least as large as its stride allows in ceil mode: 15 px with a 2x2
        # pool before 5a (torchvision's figure), 31 px with the paper's 3x3. The paper's aux 5x5/3 pool needs
        # a 5x5 map at 4a: 79 px; torchvision's adaptive aux pool takes any map.
        # The cifar stem (stride 1), measured on CPU tensors (meta ones accept smaller maps): 2 px with the 2x2
        # last pool, 4 px with the 3x3; the paper's aux pool needs the 5x5 map at 4a that 10 px gives.
        if spec.stem == "imagenet":
            main_min, aux_min = {2: 15, 3: 31}[spec.last_pool_kernel], 79
        else:
            main_min, aux_min = {2: 2, 3: 4}[spec.last_pool_kernel], 10
        self.min_input_size = aux_min if spec.aux_logits and spec.aux_pool == "paper" else main_min
        self.min_eval_input_size = main_min  # the auxiliary heads run only in training


def _tv_keys() -> tuple[tuple[str, str], ...]:
    rules = [(r"^fc\.", "head.fc."), (r"^aux(\d)\.fc2\.", r"aux_heads.aux\1.fc."), (r"^aux(\d)\.", r"aux_heads.aux\1.")]
    rules += [(r"^conv(\d)\.", r"stem.conv\1.")]
    rules += [(rf"^inception{s + 3}([a-e])\.", rf"stages.{s}.inception{s + 3}\1.") for s in range(3)]
    return tuple(rules)


FAMILY = Family(
    name="googlenet",
    paper=Paper(
        "Going deeper with convolutions",
        "Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich",
        2014,
        arxiv="1409.4842",
        table="Table 1",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: GoogLeNet(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, 224, 224),
    published={
        # params=None: the published 6,624,904 is WITHOUT the two aux heads, while the default model has them
        # (the paper trains with them; torchvision's state_dict carries them). tests/models/test_inception.py
        # and test_references.py check create_model("googlenet", aux_logits=False) against it exactly.
        "googlenet": Published(
            params=None,
            gmacs=1.498,
            top1=69.778,
            source="torchvision GoogLeNet_Weights.IMAGENET1K_V1: 6,624,904 params without aux heads",
        ),
        # Table 1: ~6.8M params (its K are 1024s), 1.5G multiply-adds in the text; the table's rows sum to
        # 1.586G. Checked row by row in tests/models/test_inception.py.
        "googlenet_paper": Published(source="Szegedy et al. 2014, Table 1: ~6.8M params, ~1.5G multiply-adds"),
    },
    deviations={
        "googlenet": (
            "BatchNorm after every conv (torchvision's port)",
            "3x3 convs in the '5x5' branch",
            "2x2/2 max-pool before 5a instead of 3x3/2",
            "auxiliary heads pool adaptively to 4x4 instead of 5x5/3",
            "dropout 0.2 instead of 0.4",
        ),
        "googlenet_paper": ("global average pooling (= the paper's 7x7 avg-pool at 224 px)",),
    },
    torchvision={"googlenet": "googlenet"},
    torchvision_keys=_tv_keys(),
)
