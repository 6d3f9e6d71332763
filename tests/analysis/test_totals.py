"""torchvision's published totals, FlopCounterMode as the oracle, the papers' figures (ResNet-50 v1, MobileNet v1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from cnnlab.analysis import analyze
from tests.analysis.conftest import tv_model
from tests.conftest import torchvision_table

FAST = {"alexnet", "resnet18", "mobilenet_v2", "shufflenet_v2_x0_5"}


def _flop_counter_macs(model: nn.Module, size: tuple[int, ...], **kw) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, *size, device="meta"), **kw)
    flops = counter.get_total_flops()  # conv, addmm/mm/bmm and attention only: 2 FLOPs per multiply-add
    assert flops % 2 == 0
    return flops // 2


def _table1() -> list[tuple[str, int, str, int]]:
    # GMACs as a string: its decimals are the precision the published figure is rounded to.
    return [(name, params, str(gmacs), crop) for name, (params, gmacs, crop, _) in torchvision_table().items()]


def _check_model(name: str, params: int, gmacs: str, crop: int) -> None:
    model = tv_model(name)
    rep = analyze(model, (3, crop, crop))
    decimals = len(gmacs.split(".")[1])
    assert round(rep.total_macs / 1e9, decimals) == float(gmacs), name
    assert rep.total_macs == _flop_counter_macs(model, (3, crop, crop)), name
    if name not in ("googlenet", "inception_v3"):  # torchvision counts these without (googlenet) / with aux heads
        assert rep.total_params == params, name
    assert not rep.unsupported, rep.unsupported


def test_table1_is_read():
    names = [r[0] for r in _table1()]
    assert len(names) == 40 and "resnet50" in names and "efficientnet_b7" in names


@pytest.mark.parametrize("name", sorted(FAST))
def test_torchvision_gmacs_fast_subset(name):
    row = next(r for r in _table1() if r[0] == name)
    _check_model(*row)


@pytest.mark.slow
def test_torchvision_gmacs_every_model_of_table1():
    for row in _table1():
        if row[0] not in FAST:
            _check_model(*row)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "convnext_atto", "efficientnet_b0"])
def test_timm_models_match_flop_counter(name):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False).eval()
    rep = analyze(model)
    assert rep.total_macs == _flop_counter_macs(model, (3, 224, 224))
    assert rep.total_params == sum(p.numel() for p in model.parameters())
    assert not rep.unsupported


def _resnet_v1(depth: int) -> nn.Module:
    """torchvision's ResNet with the downsampling stride moved back to the first 1x1 (the paper's v1)."""
    model = tv_model(f"resnet{depth}")
    for m in model.modules():
        if type(m).__name__ == "Bottleneck" and m.conv2.stride == (2, 2):
            m.conv1.stride, m.conv2.stride = (2, 2), (1, 1)
    return model


def test_resnet50_paper_v1_macs():
    rep = analyze(_resnet_v1(50))
    assert rep.total_macs == 3_857_973_248
    assert rep.receptive_field == 483  # the paper's v1 (Araujo et al., Distill 2019)


@pytest.mark.parametrize(("depth", "gmacs"), [(101, 7.570), (152, 11.282)])
def test_resnet_paper_v1_deeper(depth, gmacs):
    assert round(analyze(_resnet_v1(depth)).total_macs / 1e9, 3) == gmacs


def test_cnnlab_resnet50_paper():
    if "resnet50_paper" not in cnnlab.list_models():
        pytest.skip("cnnlab's resnet50_paper is not in the zoo yet")
    assert analyze("resnet50_paper", (3, 224, 224)).total_macs == 3_857_973_248


# ---- MobileNet v1 (Howard et al. 2017: layers of Table 1, figures of Tables 6-7) ----

_MOBILENET_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def _mobilenet_v1(alpha: float) -> nn.Module:
    def bn_relu(c):
        return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]

    c = int(32 * alpha)
    layers = [nn.Conv2d(3, c, 3, 2, 1, bias=False), *bn_relu(c)]
    for width, stride in _MOBILENET_V1:
        out = int(width * alpha)
        layers += [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), *bn_relu(c)]  # depthwise
        layers += [nn.Conv2d(c, out, 1, bias=False), *bn_relu(out)]  # pointwise
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000)]
    with torch.device("meta"):
        return nn.Sequential(*layers)


@pytest.mark.parametrize(
    ("alpha", "res", "mmacs", "mparams"),
    [
        (1.0, 224, 569, 4.2),
        (0.75, 224, 325, 2.6),
        (0.5, 224, 149, 1.3),
        (0.25, 224, 41, 0.5),
        (1.0, 192, 418, 4.2),
        (1.0, 160, 290, 4.2),
        (1.0, 128, 186, 4.2),
    ],
)
def test_mobilenet_v1_table(alpha, res, mmacs, mparams):
    rep = analyze(_mobilenet_v1(alpha), (3, res, res))
    # Within the paper's rounding unit: it prints 290.68M (1.0-160) as 290 but 568.74M (1.0-224) as 569.
    assert abs(rep.total_macs / 1e6 - mmacs) < 1
    # the paper's parameter counts are conv + FC weights (BN folded away)
    weights = sum(p.numel() for n, p in _mobilenet_v1(alpha).named_parameters() if p.dim() > 1)
    assert round(weights / 1e6, 1) == mparams


def test_mobilenet_v1_exact_params():
    assert analyze(_mobilenet_v1(1.0)).total_params == 4_231_976  # conv + BN affine + FC


@pytest.mark.parametrize(
    ("name", "alpha", "mmacs"),
    [
        ("mobilenet_v1", 1.0, 569),
        ("mobilenet_v1_075", 0.75, 325),
        ("mobilenet_v1_050", 0.5, 149),
        ("mobilenet_v1_025", 0.25, 41),
    ],
)
def test_cnnlab_mobilenet_v1(name, alpha, mmacs):
    if name not in cnnlab.list_models():
        pytest.skip(f"cnnlab's {name} is not in the zoo yet")
    rep = analyze(name, (3, 224, 224))
    assert round(rep.total_macs / 1e6) == mmacs
    assert rep.total_macs == analyze(_mobilenet_v1(alpha)).total_macs  # the zoo's model and Table 1 agree
