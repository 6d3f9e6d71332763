"""MobileNet v1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv:1704.04861, Table 1).

A 3x3 conv, then 13 depthwise separable layers (Fig. 3), global average pooling and one fully connected layer.
The two global hyper-parameters of Sec. 3.3-3.4 are spec fields:

* width multiplier alpha (`alpha`): every layer's channels M, N become alpha*M, alpha*N, which cuts MACs and
  parameters by about alpha^2; `mobilenet_v1_075`, `_050`, `_025` are the alpha rows of Table 6.
* resolution multiplier rho (`resolution`): the input side is rho * 224, which cuts MACs by about rho^2 and
  leaves the parameters unchanged (Table 7). The network is resolution-agnostic (global pooling), so rho is the
  default input size only: `create_model("mobilenet_v1", resolution=160)` is "1.0 MobileNet-160".
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.depthwise import DepthwiseSeparable
from cnnlab.nn.heads import PoolLinearHead
from cnnlab.nn.init import he_init, normal_linear

# Table 1 after the first conv ("Conv / s2, 3x3x3x32"): one row per depthwise separable layer.
# The table's last "Conv dw / s2" is a typo: its own input and output sizes are both 7x7, so the stride is 1.
TABLE1 = (
    # dw stride, pw out channels
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    *((1, 512),) * 5,  # "5x" in the table
    (2, 1024),
    (1, 1024),
)


@dataclass(frozen=True)
class MobileNetV1Spec:
    """Howard et al. 2017, Table 1 (rows), Sec. 3.3 (alpha) and Sec. 3.4 (rho = resolution / 224)."""

    alpha: float = 1.0  # width multiplier
    resolution: int = 224  # rho * 224: the default input size (Table 7 uses 224, 192, 160, 128)
    rows: tuple[tuple[int, int], ...] = TABLE1
    stem_channels: int = 32
    min_channels: int = 8  # the reference code never thins a layer below 8 channels
    dropout: float = 0.0  # the paper uses none before the classifier
    separable: bool = True  # False: every depthwise separable layer is one full 3x3 conv (Table 4, "Conv MobileNet")


SPECS = {
    "mobilenet_v1": MobileNetV1Spec(),
    "mobilenet_v1_075": MobileNetV1Spec(alpha=0.75),
    "mobilenet_v1_050": MobileNetV1Spec(alpha=0.5),
    "mobilenet_v1_025": MobileNetV1Spec(alpha=0.25),
    "mobilenet_v1_conv": MobileNetV1Spec(separable=False),
}


def _width(channels: int, spec: MobileNetV1Spec) -> int:
    if spec.alpha <= 0:
        raise ValueError(f"mobilenet_v1: alpha must be positive, got {spec.alpha}")
    return max(spec.min_channels, int(channels * spec.alpha))


class MobileNetV1(ClassifierNet):
    def __init__(self, spec: MobileNetV1Spec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        ch = _width(spec.stem_channels, spec)
        self.stem = ConvBNAct(in_chans, ch, 3, stride=2)
        stride = 2
        stages: list[list[nn.Module]] = []
        infos: list[StageInfo] = []
        for s, c in spec.rows:
            if s > 1 or not stages:  # a stage is a run of layers at one resolution
                stages.append([])
                infos.append(StageInfo("", 0, 0))
            out = _width(c, spec)
            stages[-1].append(DepthwiseSeparable(ch, out, s) if spec.separable else ConvBNAct(ch, out, 3, stride=s))
            ch, stride = out, stride * s
            infos[-1] = StageInfo(f"stages.{len(stages) - 1}", ch, stride)
        self.stages = nn.Sequential(*(nn.Sequential(*layers) for layers in stages))
        self.stage_info = tuple(infos)
        # 3x3 convs with padding 1 map a 1x1 map to 1x1 at any stride, so every input size reaches the head.
        self.min_input_size = 1
        # DEVIATION: global average pooling instead of the fixed "Avg Pool / s1, 7x7": equal at 224, and it
        # lets rho < 1 (Table 7) run through the same network.
        self.head = PoolLinearHead(ch, num_classes, spec.dropout)
        he_init(self, normal_linear(0.01))


_TABLES = "Howard et al. 2017, Tables 6-7"

FAMILY = Family(
    name="mobilenet_v1",
    paper=Paper(
        "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
        "Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam",
        2017,
        arxiv="1704.04861",
        table="Table 1",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: MobileNetV1(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, spec.resolution, spec.resolution),
    # Only alpha 1.0 has an exact parameter count; Table 6 rounds the others to 2.6M / 1.3M / 0.5M, which
    # tests/models/test_mobile.py checks.
    published={
        "mobilenet_v1": Published(params=4_231_976, gmacs=0.569, top1=70.6, source=_TABLES),
        "mobilenet_v1_075": Published(gmacs=0.325, top1=68.4, source=_TABLES),
        "mobilenet_v1_050": Published(gmacs=0.149, top1=63.7, source=_TABLES),
        "mobilenet_v1_025": Published(gmacs=0.041, top1=50.6, source=_TABLES),
        # Table 4 gives 4866M MACs, 1.3M (0.03%) below our count, so the exact-rounding checks of gmacs would
        # fail; tests/models/test_mobile.py holds it to 0.05% instead.
        "mobilenet_v1_conv": Published(top1=71.7, source="Howard et al. 2017, Table 4"),
    },
    deviations={"*": ("global average pooling instead of a fixed 7x7 average pool (equal at 224)",)},
)
