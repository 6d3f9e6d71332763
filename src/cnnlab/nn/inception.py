"""Inception modules of GoogLeNet (v1) and Inception-v3, and their auxiliary classifiers.

GoogLeNet: Szegedy et al. 2014, "Going deeper with convolutions" (arXiv:1409.4842), Fig. 2(b) and Table 1.
Inception-v3: Szegedy et al. 2015, "Rethinking the Inception Architecture" (arXiv:1512.00567), Figs. 5-7
and 10. Child names follow the layout of the published (torchvision) weights, so that loading them needs
only a rename of each module's prefix.

`conv` arguments are factories `conv(in_ch, out_ch, kernel_size, stride=1, padding=None)` (padding None =
"same"), normally a `functools.partial` of `cnnlab.nn.conv.ConvBNAct`; the family decides BN or bias.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlab.nn.heads import Head

ConvFn = Callable[..., nn.Module]


class Branches(nn.Module):
    """Parallel branches on the same input, concatenated along channels (the paper's "filter concatenation")."""

    def __init__(self, **branches: nn.Module):
        super().__init__()
        self.branch_names = tuple(branches)  # concatenation order = keyword order
        for name, branch in branches.items():
            self.add_module(name, branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._modules[n](x) for n in self.branch_names], 1)


class Inception(Branches):
    """GoogLeNet's Inception module with dimension reductions (Fig. 2b); arguments are Table 1's columns.

    1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1 ("pool proj").
    """

    def __init__(
        self,
        in_ch: int,
        c1x1: int,
        c3x3_reduce: int,
        c3x3: int,
        c5x5_reduce: int,
        c5x5: int,
        pool_proj: int,
        conv: ConvFn,
        kernel_5x5: int = 5,
    ):
        super().__init__(
            branch1=conv(in_ch, c1x1, 1),
            branch2=nn.Sequential(conv(in_ch, c3x3_reduce, 1), conv(c3x3_reduce, c3x3, 3)),
            branch3=nn.Sequential(conv(in_ch, c5x5_reduce, 1), conv(c5x5_reduce, c5x5, kernel_5x5)),
            branch4=nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(in_ch, pool_proj, 1)),
        )
        self.out_channels = c1x1 + c3x3 + c5x5 + pool_proj


class GoogLeNetAux(Head):
    """GoogLeNet's auxiliary classifier (Sec. 5): pool to 4x4 -> 1x1 conv (128) -> FC 1024 -> dropout -> FC.

    `pool` brings the tapped map to 4x4: the paper's 5x5/3 average pool does so on the 14x14 maps of 4a/4d.
    """

    def __init__(self, in_ch: int, num_classes: int, conv: ConvFn, pool: nn.Module, dropout: float = 0.7):
        super().__init__()
        self.pool = pool
        self.conv = conv(in_ch, 128, 1)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.conv(self.pool(x)))  # (N, 2048)
        return self.fc(self.drop(self.act(self.fc1(x))))


# Inception-v3. The blocks keep the names of the authors' TF release (as ported by torchvision): "A" is the
# 35x35 module, "B" the 35->17 grid reduction, "C" the 17x17 module with factorised 7x7s, "D" the 17->8
# reduction and "E" the 8x8 module with expanded filter banks.


class InceptionA(nn.Module):
    """Inception-v3 35x35 module (Fig. 5): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1."""

    def __init__(self, in_ch: int, pool_features: int, conv: ConvFn):
        super().__init__()
        self.branch1x1 = conv(in_ch, 64, 1)
        # DEVIATION: Fig. 5 replaces the 5x5 by two 3x3s; the released model keeps a 5x5 branch as well.
        self.branch5x5_1 = conv(in_ch, 48, 1)
        self.branch5x5_2 = conv(48, 64, 5)
        self.branch3x3dbl_1 = conv(in_ch, 64, 1)
        self.branch3x3dbl_2 = conv(64, 96, 3)
        self.branch3x3dbl_3 = conv(96, 96, 3)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = conv(in_ch, pool_features, 1)
        self.out_channels = 64 + 64 + 96 + pool_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(self.pool(x))], 1)


class InceptionB(nn.Module):
    """Inception-v3 grid reduction 35 -> 17 (Fig. 10): stride-2 convs next to a stride-2 max-pool."""

    def __init__(self, in_ch: int, conv: ConvFn):
        super().__init__()
        self.branch3x3 = conv(in_ch, 384, 3, stride=2, padding=0)
        self.branch3x3dbl_1 = conv(in_ch, 64, 1)
        self.branch3x3dbl_2 = conv(64, 96, 3)
        self.branch3x3dbl_3 = conv(96, 96, 3, stride=2, padding=0)
        self.pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = 384 + 96 + in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, self.pool(x)], 1)


class InceptionC(nn.Module):
    """Inception-v3 17x17 module (Fig. 6, n = 7): 7x7 convs factorised into 1x7 and 7x1, `c7` channels inside."""

    def __init__(self, in_ch: int, c7: int, conv: ConvFn):
        super().__init__()
        self.branch1x1 = conv(in_ch, 192, 1)
        self.branch7x7_1 = conv(in_ch, c7, 1)
        self.branch7x7_2 = conv(c7, c7, (1, 7))
        self.branch7x7_3 = conv(c7, 192, (7, 1))
        self.branch7x7dbl_1 = conv(in_ch, c7, 1)
        self.branch7x7dbl_2 = conv(c7, c7, (7, 1))
        self.branch7x7dbl_3 = conv(c7, c7, (1, 7))
        self.branch7x7dbl_4 = conv(c7, c7, (7, 1))
        self.branch7x7dbl_5 = conv(c7, 192, (1, 7))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = conv(in_ch, 192, 1)
        self.out_channels = 4 * 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(self.pool(x))], 1)


class InceptionD(nn.Module):
    """Inception-v3 grid reduction 17 -> 8 (Fig. 10 with factorised 7x7 on one side)."""

    def __init__(self, in_ch: int, conv: ConvFn):
        super().__init__()
        self.branch3x3_1 = conv(in_ch, 192, 1)
        self.branch3x3_2 = conv(192, 320, 3, stride=2, padding=0)
        self.branch7x7x3_1 = conv(in_ch, 192, 1)
        self.branch7x7x3_2 = conv(192, 192, (1, 7))
        self.branch7x7x3_3 = conv(192, 192, (7, 1))
        self.branch7x7x3_4 = conv(192, 192, 3, stride=2, padding=0)
        self.pool = nn.MaxPool2d(3, stride=2)
        self.out_channels = 320 + 192 + in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, self.pool(x)], 1)


class InceptionE(nn.Module):
    """Inception-v3 8x8 module with expanded filter banks (Fig. 7): 3x3s split into parallel 1x3 and 3x1."""

    def __init__(self, in_ch: int, conv: ConvFn):
        super().__init__()
        self.branch1x1 = conv(in_ch, 320, 1)
        self.branch3x3_1 = conv(in_ch, 384, 1)
        self.branch3x3_2a = conv(384, 384, (1, 3))
        self.branch3x3_2b = conv(384, 384, (3, 1))
        self.branch3x3dbl_1 = conv(in_ch, 448, 1)
        self.branch3x3dbl_2 = conv(448, 384, 3)
        self.branch3x3dbl_3a = conv(384, 384, (1, 3))
        self.branch3x3dbl_3b = conv(384, 384, (3, 1))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = conv(in_ch, 192, 1)
        self.out_channels = 320 + 2 * 384 + 2 * 384 + 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(s),
                self.branch3x3_2b(s),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(self.pool(x)),
            ],
            1,
        )


class InceptionV3Aux(Head):
    """Inception-v3's auxiliary classifier on the last 17x17 map (Fig. 8): 5x5/3 avg-pool -> 1x1 (128) -> 5x5
    (768) -> FC. The 5x5 conv needs a 5x5 pooled map, i.e. a 17x17 tap: only inputs of 299 px or more."""

    def __init__(self, in_ch: int, num_classes: int, conv: ConvFn):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv0 = conv(in_ch, 128, 1)
        self.conv1 = conv(128, 768, 5, padding=0)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.gap(self.conv1(self.conv0(self.pool(x))))))


class TransformInput(nn.Module):
    """torchvision's `transform_input`: re-normalise an ImageNet mean/std input to the [-1, 1] scaling that
    Google's TF weights were trained on, i.e. x * std / 0.5 + (mean - 0.5) / 0.5 per channel."""

    def __init__(self):
        super().__init__()
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        # Not persistent: constants, not weights, so state_dicts stay identical to torchvision's.
        self.register_buffer("scale", std / 0.5, persistent=False)
        self.register_buffer("shift", (mean - 0.5) / 0.5, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift
