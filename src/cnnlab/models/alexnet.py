"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, "ImageNet Classification with Deep Convolutional Neural
Networks", Sec. 3 and Fig. 2), and the single-GPU variant torchvision ships ("One weird trick for parallelizing
convolutional neural networks", Krizhevsky 2014, arXiv:1404.5997).

Five conv layers, three fully connected. The table has one row per conv layer; the network is one loop over it.
Each conv layer is one stage (as in LeNet-5: eight layers need no grouping); the stem is empty.

- `alexnet_paper`, the 2012 network: 96-256-384-384-256 filters; the model was split over two GPUs and conv2,
  conv4 and conv5 only see the kernel maps on their own GPU (groups=2), while conv3 and the FC layers see both;
  LRN (k=2, n=5, alpha=1e-4, beta=0.75) after conv1 and conv2, each followed by an overlapping 3x3/2 max-pool,
  as is conv5. The paper says 224x224 inputs, but an 11x11 stride-4 conv only gives its 55x55 maps from 227.
- `alexnet`, torchvision's: 64-192-384-256-256 filters, no groups, no LRN, conv1 padded by 2 so 224 works.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from torch import nn

from cnnlab.models.base import ClassifierNet, Family, Paper, Published, StageInfo
from cnnlab.nn.heads import FCHead
from cnnlab.nn.lrn import LRN

# One conv layer: out channels, kernel, stride, padding, groups, and what follows its ReLU in order
# ("lrn", "pool" = 3x3 stride-2 max-pool).
ConvRow = tuple[int, int, int, int, int, tuple[str, ...]]

PAPER_2012: tuple[ConvRow, ...] = (
    # out, k, s, p, groups, after ReLU
    (96, 11, 4, 0, 1, ("lrn", "pool")),  # each GPU holds 48 filters but sees the whole image: groups=1
    (256, 5, 1, 2, 2, ("lrn", "pool")),
    (384, 3, 1, 1, 1, ()),  # conv3 reads the kernel maps of both GPUs
    (384, 3, 1, 1, 2, ()),
    (256, 3, 1, 1, 2, ("pool",)),
)

ONE_WEIRD_TRICK: tuple[ConvRow, ...] = (
    (64, 11, 4, 2, 1, ("pool",)),
    (192, 5, 1, 2, 1, ("pool",)),
    (384, 3, 1, 1, 1, ()),
    (256, 3, 1, 1, 1, ()),
    (256, 3, 1, 1, 1, ("pool",)),
)


@dataclass(frozen=True)
class AlexNetSpec:
    """Conv rows (see ConvRow), then fc6, fc7 (`fc`) and the classifier on a `map_size` x `map_size` pool5 map."""

    convs: tuple[ConvRow, ...]
    fc: tuple[int, ...] = (4096, 4096)
    dropout: float = 0.5  # Sec. 4.2: dropout in the first two fully connected layers
    dropout_first: bool = False  # True: drop fc6's and fc7's inputs (torchvision); False: their outputs (paper)
    map_size: int = 6  # pool5 is 6x6 at the default input; fc6 reads C x 6 x 6
    adaptive_pool: bool = False  # True: average-pool any pool5 map to map_size (torchvision), so any input works
    pool_ceil: bool = False  # round pooled sizes up (Caffe's convention; ZFNet's Fig. 3 sizes need it)
    lrn: tuple[int, float, float, float] = (5, 2.0, 1e-4, 0.75)  # n, k, alpha, beta (Sec. 3.3)
    # "paper": N(0, 0.01), biases 1 in conv2/4/5 and fc6/7 (Sec. 5). "kaiming" (DEVIATION: He et al. 2015's
    # fan-in normal init, biases 0) lets a small no-BN net start learning where the paper's N(0, 0.01) and
    # torch's default leave the loss flat at ln(classes) for epochs (measured: cnnlab reproduce alexnet-tricks).
    init: Literal["torch", "paper", "kaiming"] = "torch"
    resolution: int = 227
    # The paper's two ablations, as knobs for `cnnlab reproduce alexnet-tricks`: Sec. 3.1 compares ReLU with the
    # saturating tanh; Sec. 3.4's overlapping pool (kernel z = 3, stride s = 2) with the non-overlapping z = s = 2.
    activation: Literal["relu", "tanh"] = "relu"
    pool: tuple[int, int] = (3, 2)  # max-pool kernel, stride


SPECS = {
    "alexnet_paper": AlexNetSpec(PAPER_2012, init="paper"),
    # DEVIATION: torchvision's single-GPU net (64-192-384-256-256, no LRN) with an adaptive average pool
    # before fc6, and dropout on the inputs of fc6 and fc7 rather than their outputs.
    "alexnet": AlexNetSpec(ONE_WEIRD_TRICK, dropout_first=True, adaptive_pool=True, resolution=224),
}


def min_input_size(spec: AlexNetSpec) -> int:
    """The smallest square input whose pool5 map reaches the head's size (1 with an adaptive pool).

    Walks the table backwards: a layer with kernel k, stride s, padding p gives m outputs from
    (m - 1) s + k - 2p inputs; a ceil-mode pool (no padding) from (m - 2) s + k + 1.
    """
    m = 1 if spec.adaptive_pool else spec.map_size
    z, t = spec.pool
    for _, k, s, p, _, after in reversed(spec.convs):
        for op in reversed(after):
            if op == "pool":
                m = (m - 2) * t + z + 1 if spec.pool_ceil else (m - 1) * t + z
        m = max(1, (m - 1) * s + k - 2 * p)
    return m


class AlexNet(ClassifierNet):
    """One stage per conv layer: conv -> ReLU [-> LRN] [-> max-pool], in the order the row gives."""

    def __init__(self, spec: AlexNetSpec, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        if spec.init not in ("torch", "paper", "kaiming"):
            raise ValueError(f"init must be torch, paper or kaiming, got '{spec.init}'")
        if spec.activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be relu or tanh, got '{spec.activation}'")
        if len(spec.pool) != 2 or min(spec.pool) < 1:
            raise ValueError(f"pool must be two positive integers (kernel, stride), got {list(spec.pool)}")
        self.spec = spec
        self.stem = nn.Identity()
        stages, infos, ch, stride = [], [], in_chans, 1
        for i, (out, k, s, p, groups, after) in enumerate(spec.convs):
            layers: dict[str, nn.Module] = {
                "conv": nn.Conv2d(ch, out, k, s, p, groups=groups),
                # (named "relu" whatever the activation: checkpoints and torchvision's keys do not depend on it)
                "relu": nn.ReLU(inplace=True) if spec.activation == "relu" else nn.Tanh(),
            }
            stride *= s
            for op in after:
                if op == "lrn":
                    layers["lrn"] = LRN(*spec.lrn)
                elif op == "pool":
                    # Overlapping pooling (Sec. 3.4): z=3, s=2 by default.
                    layers["pool"] = nn.MaxPool2d(spec.pool[0], spec.pool[1], ceil_mode=spec.pool_ceil)
                    stride *= spec.pool[1]
                else:  # pragma: no cover - a table typo, not user input
                    raise ValueError(f"unknown layer '{op}' after conv{i + 1}")
            stages.append(nn.Sequential(OrderedDict(layers)))
            ch = out
            infos.append(StageInfo(f"stages.{i}", ch, stride))
        self.stages = nn.Sequential(*stages)
        self.stage_info = tuple(infos)
        self.min_input_size = min_input_size(spec)
        self.head = FCHead(
            ch, spec.map_size, spec.fc, num_classes, spec.dropout, spec.dropout_first, spec.adaptive_pool
        )
        if spec.activation == "tanh":  # the whole net saturates, as in Fig. 1's tanh network
            for i, layer in enumerate(self.head.hidden):
                if isinstance(layer, nn.ReLU):
                    self.head.hidden[i] = nn.Tanh()
        if spec.init == "paper":
            _paper_init(self)
        elif spec.init == "kaiming":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)

    def reset_head(self, num_classes: int) -> None:
        super().reset_head(num_classes)
        if self.spec.init == "paper":
            nn.init.normal_(self.head.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.head.fc.bias)


def _paper_init(model: AlexNet) -> None:
    """Sec. 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers (to give the ReLUs
    positive inputs early on), 0 elsewhere."""
    ones = {id(model.stages[i].conv) for i in (1, 3, 4)}
    ones |= {id(m) for m in model.head.hidden if isinstance(m, nn.Linear)}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):  # the FC layers were drawn from N(0, 0.01) by FCHead already
            nn.init.normal_(m.weight, 0.0, 0.01)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.constant_(m.bias, 1.0 if id(m) in ones else 0.0)


def _torchvision_keys() -> tuple[tuple[str, str], ...]:
    """torchvision: features = [conv, relu, pool, conv, relu, pool, conv, relu, conv, relu, conv, relu, pool],
    classifier = [drop, fc6, relu, drop, fc7, relu, fc8]."""
    convs = (0, 3, 6, 8, 10)
    rules = [(rf"^features\.{i}\.", f"stages.{k}.conv.") for k, i in enumerate(convs)]
    rules += [(r"^classifier\.6\.", "head.fc."), (r"^classifier\.", "head.hidden.")]
    return tuple(rules)


FAMILY = Family(
    name="alexnet",
    paper=Paper(
        "ImageNet Classification with Deep Convolutional Neural Networks",
        "Krizhevsky, Sutskever, Hinton",
        2012,
        table="Sec. 3, Fig. 2",
    ),
    papers={
        "alexnet": Paper(
            "One weird trick for parallelizing convolutional neural networks",
            "Krizhevsky",
            2014,
            arxiv="1404.5997",
            table="Sec. 4 (the one-tower net); layer sizes as in torchvision",
        )
    },
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: AlexNet(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, spec.resolution, spec.resolution),
    published={
        "alexnet": Published(
            params=61_100_840, gmacs=0.714, top1=56.522, source="torchvision AlexNet_Weights.IMAGENET1K_V1 metadata"
        ),
        # The paper rounds its size to "60 million parameters"; the exact count is recomputed in the tests.
        "alexnet_paper": Published(top1=59.3, source="Krizhevsky et al. 2012, Table 2: 1 CNN, 40.7% val error"),
    },
    deviations={
        "alexnet": (
            "single-GPU 64-192-384-256-256 filters (One weird trick / torchvision) instead of 96-256-384-384-256",
            "no local response normalization and no two-GPU grouping",
            "conv1 padded by 2 so that a 224 input gives 55x55 maps",
            "adaptive average pool to 6x6 before fc6, so any input of 63 px or more runs",
            "dropout on the inputs of fc6 and fc7 instead of their outputs",
        ),
    },
    torchvision={"alexnet": "alexnet"},
    torchvision_keys=_torchvision_keys(),
)
