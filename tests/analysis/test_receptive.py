"""Receptive fields on the graph (Araujo et al., "Computing Receptive Fields of CNNs", Distill 2019)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.analysis import analyze
from cnnlab.analysis.api import resolve_model
from tests.analysis.conftest import tv_model


@pytest.mark.parametrize(
    ("name", "rf"),
    [
        ("alexnet", 195),
        ("vgg16", 212),
        ("resnet18", 435),
        ("resnet50", 427),
        ("mobilenet_v2", 491),
        ("densenet121", 2071),
        pytest.param("resnet101", 971, marks=pytest.mark.slow),
        pytest.param("resnet152", 1451, marks=pytest.mark.slow),
    ],
)
def test_torchvision_receptive_fields(name, rf):
    rep = analyze(tv_model(name))
    assert rep.receptive_field == rf
    assert not rep.warnings  # these networks' branches are aligned


def test_alexnet_per_layer_fields():
    rows = {r.name: r for r in analyze(tv_model("alexnet")).rows}
    assert rows["features.0"].receptive_field == 11 and rows["features.0"].jump == 4
    assert rows["features.2"].receptive_field == 19 and rows["features.2"].jump == 8
    assert rows["features.12"].receptive_field == 195 and rows["features.12"].jump == 32
    assert rows["classifier.1"].receptive_field is None  # not a spatial map


def test_vgg16_conv5_3():
    rows = analyze(tv_model("vgg16")).rows
    convs = [r for r in rows if r.kind == "Conv2d"]
    assert convs[-1].receptive_field == 196  # conv5_3


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_stacked_3x3_convs_see_2n_plus_1(n):
    model = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(n)])
    assert analyze(model, (4, 32, 32)).receptive_field == 2 * n + 1


class _TwoBranches(nn.Module):
    def __init__(self, pad_b: int):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 5, padding=pad_b)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_add_takes_the_max_over_branches():
    rep = analyze(_TwoBranches(pad_b=2), (3, 16, 16))
    assert rep.receptive_field == 5 and not rep.warnings


def test_misaligned_branches_warn():
    # An even kernel centres its field between pixels: half a pixel off the 3x3 branch.
    class Even(_TwoBranches):
        def __init__(self):
            super().__init__(pad_b=0)
            self.b = nn.Conv2d(3, 8, 2)

        def forward(self, x):
            return self.a(x) + self.b(F.pad(x, (0, 1, 0, 1)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = analyze(Even(), (3, 16, 16))
    assert rep.warnings and "misaligned" in rep.warnings[0] and "''" not in rep.warnings[0]
    assert any("misaligned" in str(w.message) for w in caught)


def test_crops_pads_and_strided_slices_keep_branches_aligned():
    class Aligned(_TwoBranches):
        def forward(self, x):  # the 5x5 branch without padding, the 3x3 branch cropped to match
            return self.a(x)[..., 2:-2, 2:-2] + self.b(x)

    rep = analyze(Aligned(pad_b=0), (3, 16, 16))
    assert rep.receptive_field == 5 and not rep.warnings

    class OptionA(nn.Module):  # He et al. 2015's option-A shortcut: subsample by slicing, zero-pad channels
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)

        def forward(self, x):
            short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))
            return self.conv(x) + short

    rep = analyze(OptionA(), (4, 16, 16))
    assert rep.receptive_field == 3 and rep.jump == 2 and not rep.warnings


def test_zoo_models_with_option_a_and_lrn_are_aligned():
    for name in ("resnet20", "alexnet_paper"):
        if name not in cnnlab.list_models():
            continue
        assert not analyze(name).warnings, name


def test_dilation_and_transposed_conv():
    dil = nn.Conv2d(1, 1, 3, dilation=2)
    assert analyze(dil, (1, 16, 16)).receptive_field == 5
    up = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.ConvTranspose2d(1, 1, 2, stride=2))
    rep = analyze(up, (1, 16, 16))
    assert rep.rows[-1].jump == 1  # back to input resolution
    assert rep.receptive_field == 4  # 3 px, then a 2x2 up-conv adds half a step of the coarse grid


def test_global_context_is_flagged_not_counted():
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.Sigmoid())

        def forward(self, x):
            y = self.conv(x)
            return y * self.gate(y)

    rep = analyze(SE(), (3, 16, 16))
    assert rep.receptive_field == 3 and rep.global_context


def test_functional_pooling_and_1d():
    class F1(nn.Module):
        def forward(self, x):
            return torch.nn.functional.max_pool1d(torch.nn.functional.conv1d(x, torch.ones(2, 2, 3)), 2)

    assert analyze(F1(), (2, 32)).receptive_field == 4


def _without_lrn(model: nn.Module) -> nn.Module:
    """The same net with every LocalResponseNorm replaced by an Identity (LRN is spatially pointwise)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.LocalResponseNorm):
            setattr(model, name, nn.Identity())
        else:
            _without_lrn(child)
    return model


def _fields(rep) -> list[tuple]:
    return [(r.name, r.receptive_field, r.jump) for r in rep.rows]


@pytest.mark.parametrize("name", ["googlenet_paper", "alexnet_paper"])
def test_lrn_is_spatially_pointwise(name):
    # torch's LRN squares, unsqueezes a channel axis in front of H, W, pads it and average-pools (n, 1, 1) over
    # (C, H, W): none of that is spatial, so the fields must be those of the net without LRN, and aligned.
    if name not in cnnlab.list_models():
        pytest.skip(f"{name} is not in the zoo")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a misalignment warning fails the test
        rep = analyze(name)
    assert not rep.warnings
    model, size = resolve_model(name)
    assert any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())
    plain = _without_lrn(model)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in plain.modules())
    ref = analyze(plain.eval(), size)
    assert rep.receptive_field == ref.receptive_field and rep.jump == ref.jump
    assert _fields(rep)[1:] == _fields(ref)[1:]  # row 0 is the model itself, named after it


@pytest.mark.parametrize("dims, n", [(1, 4), (2, 5), (2, 4), (3, 5), (3, 4)])
def test_lrn_on_1d_2d_3d_maps(dims, n):
    # On a 5-D input torch views (N, C, D, H, W) as (N, 1, C, D, H*W): the field's axes move and merge and must
    # come back intact. An even n pads the channel axis asymmetrically, which must not shift any centre.
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    size = (3, *(9,) * dims)

    def net(mid: nn.Module) -> nn.Module:
        return nn.Sequential(conv(3, 8, 3), mid, conv(8, 8, 3, stride=2), mid, conv(8, 8, 3))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = analyze(net(nn.LocalResponseNorm(n)), size)
    ref = analyze(net(nn.Identity()), size)
    assert not rep.warnings
    assert rep.receptive_field == ref.receptive_field == 3 + 2 + 2 * 2
    assert [r.receptive_field for r in rep.rows if r.kind != "LocalResponseNorm"] == [
        r.receptive_field for r in ref.rows if r.kind != "Identity"
    ]
