"""Blocks of Inception-v4 and Inception-ResNet-v2 (Szegedy et al. 2016, arXiv:1602.07261).

Figure numbers are the paper's. "V" in the figures marks a valid (unpadded) convolution; every other conv
keeps the map size. Layout and channel counts follow the authors' released TF-slim models (which timm
ported), so that their weights load with prefix renames only; where the figures differ, a DEVIATION says so.
All convs are conv -> BN (eps 1e-3, as in the release) -> ReLU, except the linear 1x1 "filter expansion" of
the residual blocks, which has a bias and no BN.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.inception import Branches


def conv(
    in_ch: int, out_ch: int, kernel_size: int | tuple[int, int], stride: int = 1, valid: bool = False
) -> ConvBNAct:
    """Conv-BN(eps 1e-3)-ReLU, "same" padding unless `valid` (the figures' "V")."""
    return ConvBNAct(in_ch, out_ch, kernel_size, stride, padding=0 if valid else None, bn_eps=1e-3)


def seq(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers)


def _avg_pool_1x1(in_ch: int, out_ch: int) -> nn.Sequential:
    # count_include_pad=False: the TF release averages only over real pixels at the border.
    return seq(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), conv(in_ch, out_ch, 1))


class Stem(nn.Sequential):
    """Inception-v4 stem (Fig. 3): 299x299x3 -> 35x35x384, three times a pair of branches concatenated."""

    def __init__(self, in_chans: int = 3):
        super().__init__(
            OrderedDict(
                conv1a=conv(in_chans, 32, 3, stride=2, valid=True),
                conv2a=conv(32, 32, 3, valid=True),
                conv2b=conv(32, 64, 3),
                mixed3a=Branches(maxpool=nn.MaxPool2d(3, stride=2), conv=conv(64, 96, 3, stride=2, valid=True)),
                mixed4a=Branches(
                    branch0=seq(conv(160, 64, 1), conv(64, 96, 3, valid=True)),
                    # DEVIATION: Fig. 3 lists 7x1 before 1x7; the release (and its weights) has 1x7 first.
                    branch1=seq(
                        conv(160, 64, 1),
                        conv(64, 64, (1, 7)),
                        conv(64, 64, (7, 1)),
                        conv(64, 96, 3, valid=True),
                    ),
                ),
                mixed5a=Branches(conv=conv(192, 192, 3, stride=2, valid=True), maxpool=nn.MaxPool2d(3, stride=2)),
            )
        )
        self.out_channels = 384


class InceptionA(Branches):
    """Inception-v4 35x35 module (Fig. 4)."""

    def __init__(self, in_ch: int = 384):
        super().__init__(
            branch0=conv(in_ch, 96, 1),
            branch1=seq(conv(in_ch, 64, 1), conv(64, 96, 3)),
            branch2=seq(conv(in_ch, 64, 1), conv(64, 96, 3), conv(96, 96, 3)),
            branch3=_avg_pool_1x1(in_ch, 96),
        )
        self.out_channels = 4 * 96


class ReductionA(Branches):
    """35 -> 17 reduction (Fig. 7) shared by all three networks; k, l, m, n as in Table 1."""

    def __init__(self, in_ch: int, k: int, l: int, m: int, n: int):  # noqa: E741 - the paper's letters
        super().__init__(
            branch0=conv(in_ch, n, 3, stride=2, valid=True),
            branch1=seq(conv(in_ch, k, 1), conv(k, l, 3), conv(l, m, 3, stride=2, valid=True)),
            branch2=nn.MaxPool2d(3, stride=2),
        )
        self.out_channels = n + m + in_ch


class InceptionB(Branches):
    """Inception-v4 17x17 module (Fig. 5)."""

    def __init__(self, in_ch: int = 1024):
        super().__init__(
            branch0=conv(in_ch, 384, 1),
            branch1=seq(conv(in_ch, 192, 1), conv(192, 224, (1, 7)), conv(224, 256, (7, 1))),
            # DEVIATION: Fig. 5 starts this branch with 1x7; the release alternates starting with 7x1.
            branch2=seq(
                conv(in_ch, 192, 1),
                conv(192, 192, (7, 1)),
                conv(192, 224, (1, 7)),
                conv(224, 224, (7, 1)),
                conv(224, 256, (1, 7)),
            ),
            branch3=_avg_pool_1x1(in_ch, 128),
        )
        self.out_channels = 384 + 256 + 256 + 128


class ReductionB(Branches):
    """Inception-v4 17 -> 8 reduction (Fig. 8)."""

    def __init__(self, in_ch: int = 1024):
        super().__init__(
            branch0=seq(conv(in_ch, 192, 1), conv(192, 192, 3, stride=2, valid=True)),
            branch1=seq(
                conv(in_ch, 256, 1),
                conv(256, 256, (1, 7)),
                conv(256, 320, (7, 1)),
                conv(320, 320, 3, stride=2, valid=True),
            ),
            branch2=nn.MaxPool2d(3, stride=2),
        )
        self.out_channels = 192 + 320 + in_ch


class InceptionC(nn.Module):
    """Inception-v4 8x8 module (Fig. 6): two branches end in a parallel 1x3 | 3x1 pair."""

    def __init__(self, in_ch: int = 1536):
        super().__init__()
        self.branch0 = conv(in_ch, 256, 1)
        self.branch1_0 = conv(in_ch, 384, 1)
        self.branch1_1a = conv(384, 256, (1, 3))
        self.branch1_1b = conv(384, 256, (3, 1))
        self.branch2_0 = conv(in_ch, 384, 1)
        # DEVIATION: Fig. 6 has 1x3 (448) then 3x1 (512); the release has 3x1 then 1x3.
        self.branch2_1 = conv(384, 448, (3, 1))
        self.branch2_2 = conv(448, 512, (1, 3))
        self.branch2_3a = conv(512, 256, (1, 3))
        self.branch2_3b = conv(512, 256, (3, 1))
        self.branch3 = _avg_pool_1x1(in_ch, 256)
        self.out_channels = 6 * 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1_0(x)
        b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        parts = [self.branch0(x), self.branch1_1a(b1), self.branch1_1b(b1)]
        parts += [self.branch2_3a(b2), self.branch2_3b(b2), self.branch3(x)]
        return torch.cat(parts, 1)


# Inception-ResNet-v2.


class InceptionResNetStem(nn.Sequential):
    """Inception-ResNet-v2 stem as released: 299x299x3 -> 35x35x320.

    DEVIATION: the paper gives Inception-ResNet-v2 the Inception-v4 stem (Fig. 3, 384 channels); the released
    model uses Inception-v3's stem (3x3/2, 3x3, 3x3, pool, 1x1, 3x3, pool) followed by a 35x35 Inception
    module ("Mixed_5b") with 320 outputs, which is what the published weights and parameter count are for.
    """

    def __init__(self, in_chans: int = 3):
        super().__init__(
            OrderedDict(
                conv1a=conv(in_chans, 32, 3, stride=2, valid=True),
                conv2a=conv(32, 32, 3, valid=True),
                conv2b=conv(32, 64, 3),
                pool3a=nn.MaxPool2d(3, stride=2),
                conv3b=conv(64, 80, 1),
                conv4a=conv(80, 192, 3, valid=True),
                pool5a=nn.MaxPool2d(3, stride=2),
                mixed5b=Branches(
                    branch0=conv(192, 96, 1),
                    branch1=seq(conv(192, 48, 1), conv(48, 64, 5)),
                    branch2=seq(conv(192, 64, 1), conv(64, 96, 3), conv(96, 96, 3)),
                    branch3=_avg_pool_1x1(192, 64),
                ),
            )
        )
        self.out_channels = 320


class ResidualInception(Branches):
    """x -> ReLU(x + scale * expand(concat(branches(x)))): the Inception-ResNet unit (Fig. 16/17/19).

    `expand` is the linear 1x1 "filter expansion" back to the input width; `scale` is the residual scaling
    of Sec. 3.3 (0.1-0.3) that keeps training stable. `act=False` leaves the sum unactivated.
    """

    def __init__(self, in_ch: int, scale: float, act: bool = True, **branches: nn.Module):
        super().__init__(**branches)
        concat_ch = sum(_out_channels(b) for b in branches.values())
        self.expand = nn.Conv2d(concat_ch, in_ch, 1)
        self.scale = scale
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()
        self.out_channels = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.scale * self.expand(super().forward(x)))


def _out_channels(branch: nn.Module) -> int:
    last = branch if isinstance(branch, ConvBNAct) else branch[-1]  # a conv, or a Sequential of them
    return last.conv.out_channels


class InceptionResNetA(ResidualInception):
    """35x35 residual block (Fig. 16). DEVIATION: 320 channels, as released, not the figure's 384."""

    def __init__(self, in_ch: int = 320, scale: float = 0.17, act: bool = True):
        super().__init__(
            in_ch,
            scale,
            act,
            branch0=conv(in_ch, 32, 1),
            branch1=seq(conv(in_ch, 32, 1), conv(32, 32, 3)),
            branch2=seq(conv(in_ch, 32, 1), conv(32, 48, 3), conv(48, 64, 3)),
        )


class InceptionResNetB(ResidualInception):
    """17x17 residual block (Fig. 17). DEVIATION: 1088 channels, as released, not the figure's 1154."""

    def __init__(self, in_ch: int = 1088, scale: float = 0.1, act: bool = True):
        super().__init__(
            in_ch,
            scale,
            act,
            branch0=conv(in_ch, 192, 1),
            branch1=seq(conv(in_ch, 128, 1), conv(128, 160, (1, 7)), conv(160, 192, (7, 1))),
        )


class InceptionResNetC(ResidualInception):
    """8x8 residual block (Fig. 19). DEVIATION: 2080 channels, as released, not the figure's 2048."""

    def __init__(self, in_ch: int = 2080, scale: float = 0.2, act: bool = True):
        super().__init__(
            in_ch,
            scale,
            act,
            branch0=conv(in_ch, 192, 1),
            branch1=seq(conv(in_ch, 192, 1), conv(192, 224, (1, 3)), conv(224, 256, (3, 1))),
        )


class InceptionResNetReductionB(Branches):
    """Inception-ResNet-v2's 17 -> 8 reduction (Fig. 18)."""

    def __init__(self, in_ch: int = 1088):
        super().__init__(
            branch0=seq(conv(in_ch, 256, 1), conv(256, 384, 3, stride=2, valid=True)),
            branch1=seq(conv(in_ch, 256, 1), conv(256, 288, 3, stride=2, valid=True)),
            branch2=seq(conv(in_ch, 256, 1), conv(256, 288, 3), conv(288, 320, 3, stride=2, valid=True)),
            branch3=nn.MaxPool2d(3, stride=2),
        )
        self.out_channels = 384 + 288 + 320 + in_ch
