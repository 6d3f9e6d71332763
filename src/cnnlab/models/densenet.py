"""DenseNet-BC (Huang, Liu, van der Maaten, Weinberger 2017, "Densely Connected Convolutional Networks",
arXiv:1608.06993, Table 1): the ImageNet DenseNet-121/169/201 (k = 32) and -161 (k = 48).

Layout: `stem` = 7x7/2 conv-BN-ReLU + 3x3/2 max-pool; stage 0 = dense block 1; stage i > 0 = transition i
(BN-ReLU-1x1 conv with compression theta, 2x2 average pool) then dense block i+1, so that each stage's
output is a dense block's full concatenation (the map a detector or analyzer wants); the last stage ends
with the final BN-ReLU (torchvision's `norm5` + ReLU; the authors' Torch code has it too, Table 1 shows
only the pool) before the global pool + FC head. No deviations from the paper's ImageNet networks.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.dense import DenseBlock, Transition
from cnnlab.nn.heads import PoolLinearHead


@dataclass(frozen=True)
class DenseNetSpec:
    """Table 1: layers per dense block, growth rate k, and the BC settings of Sec. 3."""

    block_config: tuple[int, ...]
    growth_rate: int = 32  # k
    stem_width: int = 64  # 2k: "the initial convolution layer comprises 2k convolutions"
    bn_size: int = 4  # bottleneck 1x1 produces bn_size * k maps
    compression: float = 0.5  # theta
    drop_rate: float = 0.0  # dropout after each 3x3 conv (the paper uses 0.2 only without augmentation)
    dropout: float = 0.0  # before the FC; not in the paper


SPECS: dict[str, DenseNetSpec] = {
    "densenet121": DenseNetSpec((6, 12, 24, 16)),
    "densenet169": DenseNetSpec((6, 12, 32, 32)),
    "densenet201": DenseNetSpec((6, 12, 48, 32)),
    "densenet161": DenseNetSpec((6, 12, 36, 24), growth_rate=48, stem_width=96),
}


class DenseNet(ClassifierNet):
    def __init__(self, spec: DenseNetSpec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        _check(spec)
        ch = spec.stem_width
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_chans, ch, 7, 2, 3, bias=False),
                bn=nn.BatchNorm2d(ch),
                relu=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(3, 2, 1),
            )
        )
        stride = 4
        stages, infos = [], []
        for i, num_layers in enumerate(spec.block_config):
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            if i > 0:
                out = int(ch * spec.compression)  # floor(theta * m)
                parts["transition"] = Transition(ch, out)
                ch, stride = out, stride * 2
            block = DenseBlock(num_layers, ch, spec.growth_rate, spec.bn_size, spec.drop_rate)
            parts["block"] = block
            ch = block.out_channels
            if i == len(spec.block_config) - 1:
                # Every H_l starts with BN-ReLU, so the last concatenation is still raw: normalise it once.
                parts["bn"] = nn.BatchNorm2d(ch)
                parts["relu"] = nn.ReLU(inplace=True)
            stages.append(nn.Sequential(parts))
            infos.append(StageInfo(f"stages.{i}", ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        # The transitions' 2x2 average pools are unpadded; one total stride (32) leaves a 1x1 final map.
        self.min_input_size = stride
        self.head = PoolLinearHead(ch, num_classes, spec.dropout)
        if not any(p.is_meta for p in self.parameters()):  # meta tensors have no values to initialise
            self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)  # He init, as the authors' Torch code
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


def _check(spec: DenseNetSpec) -> None:
    if not spec.block_config or any(n < 1 for n in spec.block_config):
        raise ValueError(f"block_config needs at least one block of >= 1 layers, got {spec.block_config}")
    if not 0.0 < spec.compression <= 1.0:
        raise ValueError(f"compression theta must be in (0, 1], got {spec.compression}")
    if spec.growth_rate < 1 or spec.bn_size < 1 or spec.stem_width < 1:
        raise ValueError("growth_rate, bn_size and stem_width must be positive")
    for name in ("drop_rate", "dropout"):
        if not 0.0 <= getattr(spec, name) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(spec, name)}")


def _tv_rules(num_blocks: int = 4) -> tuple[tuple[str, str], ...]:
    """torchvision's old-style names (features.denseblockK.denselayerL.norm1, features.transitionK.norm,
    features.norm5, classifier) -> ours (stages.K-1.block.layerL.bn1, stages.K.transition.bn, ...)."""
    rules: list[tuple[str, str]] = [
        (r"^features\.conv0\.", "stem.conv."),
        (r"^features\.norm0\.", "stem.bn."),
        (r"^features\.norm5\.", f"stages.{num_blocks - 1}.bn."),
        (r"^classifier\.", "head.fc."),
    ]
    for k in range(1, num_blocks + 1):
        rules += [
            (rf"^features\.denseblock{k}\.denselayer(\d+)\.norm(\d)\.", rf"stages.{k - 1}.block.layer\1.bn\2."),
            (rf"^features\.denseblock{k}\.denselayer(\d+)\.conv(\d)\.", rf"stages.{k - 1}.block.layer\1.conv\2."),
            # transition K sits between block K and K+1: it opens our stage K (0-based)
            (rf"^features\.transition{k}\.norm\.", f"stages.{k}.transition.bn."),
            (rf"^features\.transition{k}\.conv\.", f"stages.{k}.transition.conv."),
        ]
    return tuple(rules)


_TV = "torchvision's IMAGENET1K_V1 weights metadata (num_params, _ops, acc@1)"

FAMILY = Family(
    name="densenet",
    paper=Paper(
        "Densely Connected Convolutional Networks",
        "Huang, Liu, van der Maaten, Weinberger",
        2017,
        "1608.06993",
        "Table 1",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: DenseNet(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, 224, 224),
    published={
        "densenet121": Published(7_978_856, 2.834, 74.434, _TV),
        "densenet161": Published(28_681_000, 7.728, 77.138, _TV),
        "densenet169": Published(14_149_480, 3.36, 75.6, _TV),
        "densenet201": Published(20_013_928, 4.291, 76.896, _TV),
    },
    torchvision={n: n for n in SPECS},
    torchvision_keys=_tv_rules(),
    timm={n: n for n in SPECS},
    timm_keys=_tv_rules(),  # timm keeps torchvision's names (its norm5 is a BN with the ReLU inside)
)
