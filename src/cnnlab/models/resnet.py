"""ResNet and its descendants: one spec table, one Net.

He et al. 2015, "Deep Residual Learning for Image Recognition" (arXiv:1512.03385): Table 1 (ImageNet
ResNet-18..152 and their plain counterparts), Sec. 4.2 (CIFAR ResNet-20..1202, option A shortcuts).
He et al. 2016, "Identity Mappings in Deep Residual Networks" (arXiv:1603.05027): full pre-activation,
Fig. 4(e). Xie et al. 2017, ResNeXt (arXiv:1611.05431), Table 1. Zagoruyko & Komodakis 2016, Wide ResNets
(arXiv:1605.07146), in torchvision's ImageNet form (bottleneck twice as wide). Hu et al. 2018, SENet
(arXiv:1709.01507), Table 1.

Layout: `stem` (imagenet: 7x7/2 conv-BN-ReLU, 3x3/2 max-pool; cifar: 3x3 conv-BN-ReLU), `stages` = the
paper's conv2_x..conv5_x (on CIFAR the three stacks on 32/16/8 maps; torchvision's layer1..layer4), `head` =
global average pool + FC. Pre-activation nets end with BN-ReLU (Fig. 4e: the last unit's sum is never
normalised otherwise); it is placed at the end of the last stage, as children `bn` and `relu`, so that
`features(x)` returns the activated map, the head stays the family-wide PoolLinearHead, and the last stage's
declared output is what a detector or fine-tuner should read.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.init import he_init
from cnnlab.nn.residual import BasicBlock, Bottleneck, PreActBlock, PreActBottleneck, ShortcutKind, StrideOn


@dataclass(frozen=True)
class ResNetSpec:
    """He et al. 2015, Table 1 (arXiv:1512.03385); pre-activation: He et al. 2016 (arXiv:1603.05027).

    `widths` are the paper's per-stage filter counts ("planes"): a bottleneck stage outputs 4 x width
    channels and its inner 3x3 has width x width_per_group / 64 x groups channels (ResNeXt's C x d).
    """

    block: Literal["basic", "bottleneck"]
    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    shortcut: ShortcutKind = "B"  # the paper's options; "none" = plain net
    preact: bool = False
    groups: int = 1  # ResNeXt cardinality C
    width_per_group: int = 64  # ResNeXt bottleneck width d (at the first stage); 128 = Wide ResNet-x-2
    se_reduction: int | None = None  # SENet r
    stem: Literal["imagenet", "cifar"] = "imagenet"
    stride_on: StrideOn = "3x3"  # DEVIATION: "3x3" is torchvision's v1.5; "1x1" is the paper's v1
    stem_norm: bool = True  # BN-ReLU after the stem conv; pre-act nets default to False (timm's resnetv2)
    dropout: float = 0.0  # before the FC; none in the papers


def _cifar(block: str, n: int, **kw) -> ResNetSpec:
    # Sec. 4.2: 6n+2 layers (basic) with 16-32-64 filters on 32-16-8 maps; 9n+2 with bottlenecks (He 2016).
    return ResNetSpec(block, (n, n, n), (16, 32, 64), stem="cifar", **kw)  # type: ignore[arg-type]


_PLAIN = {"shortcut": "none"}
# DEVIATION: pre-act stems are a bare conv (timm resnetv2); the authors' Torch code adds BN-ReLU (stem_norm=True).
_PRE = {"preact": True, "stem_norm": False}

SPECS: dict[str, ResNetSpec] = {
    # He 2015, Table 1 (torchvision's v1.5: stride on the 3x3)
    "resnet18": ResNetSpec("basic", (2, 2, 2, 2)),
    "resnet34": ResNetSpec("basic", (3, 4, 6, 3)),
    "resnet50": ResNetSpec("bottleneck", (3, 4, 6, 3)),
    "resnet101": ResNetSpec("bottleneck", (3, 4, 23, 3)),
    "resnet152": ResNetSpec("bottleneck", (3, 8, 36, 3)),
    # the paper's own: stride 2 on the first 1x1 of conv3_1, conv4_1, conv5_1
    "resnet50_paper": ResNetSpec("bottleneck", (3, 4, 6, 3), stride_on="1x1"),
    "resnet101_paper": ResNetSpec("bottleneck", (3, 4, 23, 3), stride_on="1x1"),
    "resnet152_paper": ResNetSpec("bottleneck", (3, 8, 36, 3), stride_on="1x1"),
    # Table 2 / Fig. 4: the same stacks without shortcuts
    "plain18": ResNetSpec("basic", (2, 2, 2, 2), **_PLAIN),
    "plain34": ResNetSpec("basic", (3, 4, 6, 3), **_PLAIN),
    # He 2016, Fig. 4(e), full pre-activation
    "preact_resnet18": ResNetSpec("basic", (2, 2, 2, 2), **_PRE),
    "preact_resnet34": ResNetSpec("basic", (3, 4, 6, 3), **_PRE),
    "preact_resnet50": ResNetSpec("bottleneck", (3, 4, 6, 3), **_PRE),
    "preact_resnet101": ResNetSpec("bottleneck", (3, 4, 23, 3), **_PRE),
    "preact_resnet152": ResNetSpec("bottleneck", (3, 8, 36, 3), **_PRE),
    # He 2015, Sec. 4.2, Table 6: CIFAR-10, option A
    "resnet20": _cifar("basic", 3, shortcut="A"),
    "resnet32": _cifar("basic", 5, shortcut="A"),
    "resnet44": _cifar("basic", 7, shortcut="A"),
    "resnet56": _cifar("basic", 9, shortcut="A"),
    "resnet110": _cifar("basic", 18, shortcut="A"),
    "resnet1202": _cifar("basic", 200, shortcut="A"),
    "plain20": _cifar("basic", 3, **_PLAIN),
    "plain32": _cifar("basic", 5, **_PLAIN),
    "plain44": _cifar("basic", 7, **_PLAIN),
    "plain56": _cifar("basic", 9, **_PLAIN),
    "plain110": _cifar("basic", 18, **_PLAIN),
    # He 2016, Table 3 (CIFAR, projection shortcuts where the shape changes)
    "preact_resnet110": _cifar("basic", 18, **_PRE),
    "preact_resnet164": _cifar("bottleneck", 18, **_PRE),
    # Xie et al. 2017, Table 1: cardinality x bottleneck width
    "resnext50_32x4d": ResNetSpec("bottleneck", (3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x8d": ResNetSpec("bottleneck", (3, 4, 23, 3), groups=32, width_per_group=8),
    "resnext101_64x4d": ResNetSpec("bottleneck", (3, 4, 23, 3), groups=64, width_per_group=4),
    # Zagoruyko & Komodakis 2016, ImageNet form: the bottleneck's inner width doubled
    # DEVIATION: torchvision's WRN-50-2 / 101-2, not the paper's CIFAR WRN-d-k built from basic blocks
    "wide_resnet50_2": ResNetSpec("bottleneck", (3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": ResNetSpec("bottleneck", (3, 4, 23, 3), width_per_group=128),
    # Hu et al. 2018, Table 1 (r = 16)
    "se_resnet50": ResNetSpec("bottleneck", (3, 4, 6, 3), se_reduction=16),
    "se_resnet101": ResNetSpec("bottleneck", (3, 4, 23, 3), se_reduction=16),
    "se_resnext50_32x4d": ResNetSpec("bottleneck", (3, 4, 6, 3), groups=32, width_per_group=4, se_reduction=16),
}


class ResNet(ClassifierNet):
    """Every variant above: a stem, len(depths) stages of residual units, global pool + FC."""

    def __init__(self, spec: ResNetSpec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        _check(spec)
        self.spec = spec
        self.stem, ch, stride = _stem(spec, in_chans)
        stages, infos = [], []
        for i, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
            s = 1 if i == 0 else 2  # conv2_x follows the max-pool at full resolution; later stages halve
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for j in range(depth):
                blocks[str(j)], ch = _unit(spec, ch, width, s if j == 0 else 1)
            stride *= s
            if spec.preact and i == len(spec.depths) - 1:
                # Fig. 4(e): the last unit's output is an un-normalised sum; BN-ReLU it before pooling.
                blocks["bn"] = nn.BatchNorm2d(ch)
                blocks["relu"] = nn.ReLU(inplace=True)
            stages.append(nn.Sequential(blocks))
            infos.append(StageInfo(f"stages.{i}", ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        # Every conv and pool is padded, so any input runs; we ask for one total stride so that the last
        # map has at least one cell computed from real pixels rather than from padding alone.
        self.min_input_size = stride
        self.head = PoolLinearHead(ch, num_classes, spec.dropout)
        he_init(self)  # He et al. 2015b, as the ResNet paper used (Sec. 3.4); linear layers keep PyTorch's


def _check(spec: ResNetSpec) -> None:
    if spec.block not in ("basic", "bottleneck"):
        raise ValueError(f"unknown block {spec.block!r}; expected 'basic' or 'bottleneck'")
    if len(spec.depths) != len(spec.widths) or not spec.depths:
        raise ValueError(f"depths {spec.depths} and widths {spec.widths} must be non-empty and of equal length")
    if any(d < 1 for d in spec.depths):
        raise ValueError(f"every stage needs at least one unit, got depths {spec.depths}")
    if spec.block == "basic" and (spec.groups != 1 or spec.width_per_group != 64):
        raise ValueError("groups and width_per_group apply to bottleneck blocks only")
    if spec.stem not in ("imagenet", "cifar"):
        raise ValueError(f"unknown stem {spec.stem!r}; expected 'imagenet' or 'cifar'")
    if not 0.0 <= spec.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {spec.dropout}")


def _stem(spec: ResNetSpec, in_chans: int) -> tuple[nn.Sequential, int, int]:
    """(stem, its output channels, its stride)."""
    ch = spec.widths[0]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if spec.stem == "imagenet":
        layers["conv"] = nn.Conv2d(in_chans, ch, 7, 2, 3, bias=False)  # Table 1, conv1: 7x7, 64, stride 2
    else:
        layers["conv"] = nn.Conv2d(in_chans, ch, 3, 1, 1, bias=False)  # Sec. 4.2: "the first layer is 3x3"
    if spec.stem_norm:
        layers["bn"] = nn.BatchNorm2d(ch)
        layers["relu"] = nn.ReLU(inplace=True)
    if spec.stem == "imagenet":
        layers["pool"] = nn.MaxPool2d(3, 2, 1)  # conv2_x: "3x3 max pool, stride 2"
        return nn.Sequential(layers), ch, 4
    return nn.Sequential(layers), ch, 1


def _unit(spec: ResNetSpec, in_ch: int, width: int, stride: int) -> tuple[nn.Module, int]:
    """One residual unit and its output channels."""
    if spec.block == "basic":
        cls = PreActBlock if spec.preact else BasicBlock
        return cls(in_ch, width, stride, spec.shortcut, spec.se_reduction), width
    cls = PreActBottleneck if spec.preact else Bottleneck
    out_ch = width * cls.expansion
    inner = int(width * spec.width_per_group / 64) * spec.groups  # ResNeXt: C groups of d channels
    block = cls(in_ch, inner, out_ch, stride, spec.shortcut, spec.groups, spec.se_reduction, spec.stride_on)
    return block, out_ch


def _tv_rules(num_stages: int = 4) -> tuple[tuple[str, str], ...]:
    """torchvision's (and timm's ResNet) names -> ours: conv1/bn1 -> stem, layerK -> stages.K-1, fc -> head."""
    rules: list[tuple[str, str]] = [(r"^conv1\.", "stem.conv."), (r"^bn1\.", "stem.bn."), (r"^fc\.", "head.fc.")]
    for k in range(1, num_stages + 1):
        rules += [
            (rf"^layer{k}\.(\d+)\.downsample\.0\.", rf"stages.{k - 1}.\1.shortcut.conv."),
            (rf"^layer{k}\.(\d+)\.downsample\.1\.", rf"stages.{k - 1}.\1.shortcut.bn."),
            (rf"^layer{k}\.", f"stages.{k - 1}."),
        ]
    return tuple(rules)


RESNET = Paper("Deep Residual Learning for Image Recognition", "He, Zhang, Ren, Sun", 2015, "1512.03385", "Table 1")
_PREACT = Paper("Identity Mappings in Deep Residual Networks", "He, Zhang, Ren, Sun", 2016, "1603.05027", "Fig. 4(e)")
_RESNEXT = Paper(
    "Aggregated Residual Transformations for Deep Neural Networks",
    "Xie, Girshick, Dollar, Tu, He",
    2017,
    "1611.05431",
    "Table 1",
)
_WRN = Paper("Wide Residual Networks", "Zagoruyko, Komodakis", 2016, "1605.07146", "Table 1")
_SENET = Paper("Squeeze-and-Excitation Networks", "Hu, Shen, Albanie, Sun, Wu", 2018, "1709.01507", "Table 1")
_CIFAR_TABLE = replace(RESNET, table="Sec. 4.2, Table 6")


def _paper(name: str) -> Paper:
    if name.startswith("preact_"):
        return replace(_PREACT, table="Table 3") if SPECS[name].stem == "cifar" else _PREACT
    if name.startswith("resnext"):
        return _RESNEXT
    if name.startswith("wide_"):
        return _WRN
    if name.startswith("se_"):
        return _SENET
    if SPECS[name].stem == "cifar":
        return _CIFAR_TABLE
    return RESNET


_TV = "torchvision's IMAGENET1K_V1 weights metadata (num_params, _ops, acc@1)"
_TV_FIGS = {
    "resnet18": (11_689_512, 1.814, 69.758),
    "resnet34": (21_797_672, 3.664, 73.314),
    "resnet50": (25_557_032, 4.089, 76.13),
    "resnet101": (44_549_160, 7.801, 77.374),
    "resnet152": (60_192_808, 11.514, 78.312),
    "resnext50_32x4d": (25_028_904, 4.23, 77.618),
    "resnext101_32x8d": (88_791_336, 16.414, 79.312),
    "resnext101_64x4d": (83_455_272, 15.46, 83.246),
    "wide_resnet50_2": (68_883_240, 11.398, 78.468),
    "wide_resnet101_2": (126_886_696, 22.753, 78.848),
}
# He 2015, Table 6: CIFAR-10 test error (%), best run (110: best of 5; mean 6.61 +- 0.16)
_CIFAR_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
_CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}

PUBLISHED: dict[str, Published] = {
    **{n: Published(p, g, t, _TV) for n, (p, g, t) in _TV_FIGS.items()},
    **{
        f"resnet{d}_paper": Published(
            _TV_FIGS[f"resnet{d}"][0], g, None, "v1 MACs, torchvision's way (He 2015, Table 1: 3.8/7.6/11.3 G)"
        )
        for d, g in ((50, 3.858), (101, 7.570), (152, 11.282))
    },
    **{
        f"resnet{d}": Published(p, None, None, f"He 2015, Sec. 4.2 and Table 6: CIFAR-10 test error {_CIFAR_ERR[d]}%")
        for d, p in _CIFAR_PARAMS.items()
    },
    **{
        f"plain{d}": Published(p, None, None, f"= resnet{d} (He 2015, Sec. 4.2): option A shortcuts have no parameters")
        for d, p in _CIFAR_PARAMS.items()
        if d != 1202
    },
    "preact_resnet50": Published(
        25_549_352, None, None, "timm resnetv2_50 (He 2016, Fig. 4(e)); stem conv without BN, as built here"
    ),
    "preact_resnet110": Published(None, None, None, "1.7M params, CIFAR-10 error 6.37% (He 2016, Table 3)"),
    "preact_resnet164": Published(None, None, None, "1.7M params, CIFAR-10 error 5.46% (He 2016, Table 3)"),
    "se_resnet50": Published(28_088_024, None, None, "timm seresnet50's count (28.09M in Hu et al. 2018, r = 16)"),
    "se_resnext50_32x4d": Published(27_559_896, None, None, "timm seresnext50_32x4d's count (Hu et al. 2018, r = 16)"),
}

_V15 = "downsampling stride on the bottleneck's 3x3 conv (torchvision v1.5), not the first 1x1 (resnet*_paper)"
_PREACT_STEM = (
    "stem is conv + max-pool with no BN-ReLU (timm's resnetv2 layout, 25,549,352 params at depth 50); the "
    "authors' Torch code has conv-BN-ReLU there: stem_norm=True restores it (+128 params at width 64)"
)
_PREACT_STEM_CIFAR = "stem is a bare 3x3 conv (the first unit's BN-ReLU follows it); stem_norm=True adds BN-ReLU"
DEVIATIONS: dict[str, tuple[str, ...]] = {}
for _n, _s in SPECS.items():
    _d: list[str] = []
    # ResNeXt (Sec. 4, "stride-2 convolutions in the 3x3 layer") and the ImageNet WRN / pre-act models (built
    # on fb.resnet.torch) already stride on the 3x3: only the original ResNets deviate by doing so.
    if _n.startswith("resnet") and _s.block == "bottleneck" and _s.stride_on == "3x3":
        _d.append(_V15)
    if _s.preact:
        _d.append(_PREACT_STEM if _s.stem == "imagenet" else _PREACT_STEM_CIFAR)
        _d.append(
            "projection shortcuts read the unit's BN-ReLU output and have no BN (authors' code; Fig. 4 "
            "does not show projections)"
        )
    if _n.startswith("wide_"):
        _d.append(
            "torchvision's ImageNet WRN: a ResNet-50/101 bottleneck with doubled inner width, not the "
            "paper's CIFAR WRN-d-k of basic blocks"
        )
    if _n.startswith("se_"):
        _d.append("downsampling stride on the bottleneck's 3x3 conv (timm's seresnet layout)")
    if _d:
        DEVIATIONS[_n] = tuple(_d)

_TORCHVISION = {n: n for n in _TV_FIGS}
_TIMM = {
    **{n: n for n in _TV_FIGS},
    "se_resnet50": "seresnet50",
    "se_resnet101": "seresnet101",
    "se_resnext50_32x4d": "seresnext50_32x4d",
}


def build(spec: ResNetSpec, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    return ResNet(spec, num_classes, in_chans)


def _is_cifar(name: str, spec: ResNetSpec) -> bool:
    return spec.stem == "cifar"


FAMILY = Family(
    name="resnet",
    paper=RESNET,
    specs=SPECS,
    build=build,
    input_size=lambda name, spec: (3, 32, 32) if _is_cifar(name, spec) else (3, 224, 224),
    papers={n: _paper(n) for n in SPECS if _paper(n) is not RESNET},
    published=PUBLISHED,
    deviations=DEVIATIONS,
    torchvision=_TORCHVISION,
    torchvision_keys=_tv_rules(),
    timm=_TIMM,
    timm_keys=_tv_rules(),
    default_num_classes=lambda name, spec: 10 if _is_cifar(name, spec) else 1000,
)
