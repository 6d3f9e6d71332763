"""ResNet family facts: shortcut options, v1 vs v1.5 stride, plain nets, pre-activation order, SE, ResNeXt."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.resnet import SPECS, ResNet, ResNetSpec
from cnnlab.nn.residual import BasicBlock, Bottleneck, PadShortcut, PreActBlock, PreActBottleneck, Projection
from cnnlab.nn.se import SqueezeExcite
from cnnlab.registry import get_entry


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kw) -> ResNet:
    with torch.device("meta"):
        return cnnlab.create_model(name, **kw)


def conv_linear_macs(model: nn.Module, size: tuple[int, int, int]) -> int:
    """torchvision's `_ops` rule: conv and linear weight multiply-adds only, batch 1 (runs on meta)."""
    total = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out.numel() * (m.in_channels // m.groups) * kh * kw
        else:
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.empty(1, *size, device=next(model.parameters()).device))
    for h in handles:
        h.remove()
    return total


def test_mac_counter_agrees_with_flop_counter_mode():
    """The hook counter above is the fast path; PyTorch's FlopCounterMode (2 FLOPs per MAC) is the oracle."""
    from torch.utils.flop_counter import FlopCounterMode

    model = cnnlab.create_model("resnet20").eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert fc.get_total_flops() == 2 * conv_linear_macs(model, (3, 32, 32))


GMAC_NAMES = [n for n, p in get_entry("resnet18").family.published.items() if p.gmacs is not None]


@pytest.mark.parametrize("name", GMAC_NAMES)
def test_published_gmacs(name: str):
    published = cnnlab.model_info(name).published
    macs = conv_linear_macs(meta_model(name), cnnlab.model_info(name).input_size)
    digits = len(str(published.gmacs).split(".")[1])
    assert round(macs / 1e9, digits) == pytest.approx(published.gmacs, abs=1e-9)


def test_v1_vs_v15_stride_placement():
    v15, v1 = meta_model("resnet50"), meta_model("resnet50_paper")
    for i in (1, 2, 3):  # conv3_1, conv4_1, conv5_1 downsample
        b15, b1 = v15.stages[i][0], v1.stages[i][0]
        assert (b15.conv1.stride, b15.conv2.stride) == ((1, 1), (2, 2))
        assert (b1.conv1.stride, b1.conv2.stride) == ((2, 2), (1, 1))
        assert b15.shortcut.conv.stride == b1.shortcut.conv.stride == (2, 2)
    # Same weights, different cost: v1 runs the 3x3 at the halved resolution.
    assert n_params(v15) == n_params(v1)
    assert conv_linear_macs(v1, (3, 224, 224)) < conv_linear_macs(v15, (3, 224, 224))
    # The first stage follows the max-pool and never strides.
    assert all(m.stride == (1, 1) for m in v1.stages[0].modules() if isinstance(m, nn.Conv2d))


def test_option_a_shortcut_is_parameter_free_and_pads_zeros():
    model = meta_model("resnet20")
    pads = [m for m in model.modules() if isinstance(m, PadShortcut)]
    assert len(pads) == 2  # 16->32 and 32->64
    assert not any(isinstance(m, Projection) for m in model.modules())
    assert all(n_params(p) == 0 for p in pads)
    x = torch.randn(2, 16, 8, 8)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()
    # Option A costs nothing, so a CIFAR ResNet and its plain twin have the same parameters.
    assert n_params(model) == n_params(meta_model("plain20"))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet20", 269_722),
        ("resnet32", 464_154),
        ("resnet44", 658_586),
        ("resnet56", 853_018),
        ("resnet110", 1_727_962),
        ("resnet1202", 19_421_274),
        ("plain20", 269_722),
        ("plain56", 853_018),
        ("plain110", 1_727_962),
        ("se_resnet50", 28_088_024),
        ("se_resnext50_32x4d", 27_559_896),
        ("preact_resnet50", 25_549_352),
    ],
)
def test_exact_params_of_non_torchvision_models(name: str, params: int):
    entry = get_entry(name)
    assert n_params(meta_model(name, num_classes=entry.family.default_num_classes(name, entry.spec))) == params


def test_preact_stem_norm_adds_128_params():
    assert n_params(meta_model("preact_resnet50", stem_norm=True)) == 25_549_352 + 128


@pytest.mark.parametrize(("name", "millions"), [("preact_resnet110", 1.7), ("preact_resnet164", 1.7)])
def test_cifar_preact_params_match_paper_rounding(name: str, millions: float):
    assert round(n_params(meta_model(name)) / 1e6, 1) == millions  # He 2016, Table 3


def test_cifar_defaults():
    for name in ("resnet20", "plain110", "preact_resnet164"):
        info = cnnlab.model_info(name)
        assert info.input_size == (3, 32, 32)
        assert meta_model(name).num_classes == 10
        assert [s.channels for s in meta_model(name).stage_info][0] in (16, 64)
    assert cnnlab.model_info("resnet50").input_size == (3, 224, 224)
    assert meta_model("resnet50").num_classes == 1000


def test_plain_nets_have_no_shortcut_additions():
    for name in ("plain18", "plain34", "plain20", "plain110"):
        blocks = [m for m in meta_model(name).modules() if isinstance(m, BasicBlock)]
        assert blocks and all(b.shortcut is None for b in blocks)
    # Functionally: a plain block is exactly its two conv-BN layers; a residual block adds x on top.
    plain = BasicBlock(8, 8, shortcut="none").eval()
    res = BasicBlock(8, 8, shortcut="B").eval()
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        f = plain.bn2(plain.conv2(torch.relu(plain.bn1(plain.conv1(x)))))
        assert torch.allclose(plain(x), torch.relu(f))
        assert torch.allclose(res(x), torch.relu(f + x))


def test_imagenet_plain_net_drops_only_projections():
    # plain34 = resnet34 minus the three projection shortcuts (1x1 conv + BN each).
    proj = [m for m in meta_model("resnet34").modules() if isinstance(m, Projection)]
    assert len(proj) == 3
    assert n_params(meta_model("resnet34")) - n_params(meta_model("plain34")) == sum(n_params(p) for p in proj)


def _call_order(block: nn.Module, x: torch.Tensor) -> list[str]:
    order: list[str] = []
    # Direct children only, without the shortcut and the empty SE slot (an Identity when r is None).
    names = {m: n for n, m in block.named_children() if n != "shortcut" and not isinstance(m, nn.Identity)}
    handles = [m.register_forward_pre_hook(lambda m, _i: order.append(names[m])) for m in names]
    block(x)
    for h in handles:
        h.remove()
    return order


def test_preact_ordering_is_bn_relu_conv():
    x = torch.randn(2, 16, 8, 8)
    assert _call_order(PreActBlock(16, 16), x) == ["bn1", "relu", "conv1", "bn2", "relu", "conv2"]
    assert _call_order(PreActBottleneck(16, 8, 16), x) == [
        *("bn1", "relu", "conv1"),
        *("bn2", "relu", "conv2"),
        *("bn3", "relu", "conv3"),
    ]
    # Post-activation for contrast: conv-BN-ReLU, and a ReLU after the addition.
    assert _call_order(BasicBlock(16, 16), x) == ["conv1", "bn1", "relu", "conv2", "bn2", "relu"]
    # SE scales the residual branch after its last BN, before the addition (Hu et al., Fig. 3).
    assert _call_order(Bottleneck(16, 4, 16, se_reduction=4), x)[-3:] == ["bn3", "se", "relu"]


def test_preact_identity_path_is_clean_and_net_ends_with_bn_relu():
    block = PreActBlock(8, 8).eval()
    with torch.no_grad():
        block.conv2.weight.zero_()  # F(x) = 0: the unit must be the identity (He 2016, Eq. 3), no ReLU after
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(block(x), x)
    model = cnnlab.create_model("preact_resnet110").eval()
    last = model.stages[-1]
    assert isinstance(last.bn, nn.BatchNorm2d) and isinstance(last.relu, nn.ReLU)
    with torch.no_grad():
        assert (model.features(torch.randn(2, 3, 32, 32)) >= 0).all()
    # preact_resnet164 uses bottlenecks (9n+2 with n = 18)
    assert sum(isinstance(m, PreActBottleneck) for m in meta_model("preact_resnet164").modules()) == 54


@pytest.mark.parametrize(("name", "count"), [("se_resnet50", 16), ("se_resnet101", 33), ("se_resnext50_32x4d", 16)])
def test_se_count_and_reduction(name: str, count: int):
    model = meta_model(name)
    ses = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert len(ses) == count  # one per bottleneck
    for se in ses:
        c = se.fc1.in_channels
        assert se.fc1.out_channels == c // 16 and se.fc2.out_channels == c
    base = name.replace("se_", "")
    added = sum(2 * m.fc1.in_channels * m.fc1.out_channels + m.fc1.out_channels + m.fc1.in_channels for m in ses)
    assert n_params(model) - n_params(meta_model(base)) == added


def test_se_rescales_channels():
    se = SqueezeExcite(32, 16)
    x = torch.randn(2, 32, 4, 4)
    y = se(x)
    ratio = y / x
    gates = ratio[..., :1, :1]
    assert torch.allclose(ratio, gates.expand_as(ratio), atol=1e-5)  # one gate per channel
    assert ((gates > 0) & (gates < 1)).all()


@pytest.mark.parametrize(("name", "groups", "width0"), [("resnext50_32x4d", 32, 128), ("resnext101_64x4d", 64, 256)])
def test_resnext_groups(name: str, groups: int, width0: int):
    model = meta_model(name)
    for i, stage in enumerate(model.stages):
        for block in stage:
            assert isinstance(block, Bottleneck)
            assert block.conv2.groups == groups
            assert block.conv2.in_channels == width0 * 2**i  # C x d doubles per stage
            assert block.conv3.out_channels == 256 * 2**i


def test_resnext_block_cost_matches_paper_formula():
    """Xie et al. 2017, Sec. 3.4 and Table 2: with 4C = 256 in, G groups of width c: (8Cc + 9c^2) x H x W x G MACs."""
    for g, c in ((1, 64), (4, 24), (32, 4)):
        block = Bottleneck(256, g * c, 256, groups=g).to("meta")
        macs = conv_linear_macs(block, (256, 14, 14))
        assert macs == (8 * 64 * c + 9 * c * c) * 14 * 14 * g
        assert abs(macs / (14 * 14) - 70_000) < 2_000


def test_bad_specs_raise_clear_errors():
    with pytest.raises(ValueError, match="bottleneck"):
        cnnlab.create_model("resnet18", groups=32)
    with pytest.raises(ValueError, match="shortcut"):
        ResNet(ResNetSpec("basic", (1, 1), (8, 16), shortcut="C"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride_on"):
        ResNet(ResNetSpec("bottleneck", (1, 1), (8, 16), stride_on="5x5"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equal length"):
        ResNet(ResNetSpec("basic", (1, 1), (8,)))
    with pytest.raises(TypeError, match="se_ratio"):
        cnnlab.create_model("resnet18", se_ratio=4)


def test_dropout_spec_field_reaches_the_head():
    model = cnnlab.create_model("resnet20", dropout=0.3)
    assert isinstance(model.head.drop, nn.Dropout) and model.head.drop.p == 0.3
    assert SPECS["resnet50"].dropout == 0.0


def test_variant_papers():
    assert cnnlab.model_info("resnet50").paper.arxiv == "1512.03385"
    assert cnnlab.model_info("preact_resnet50").paper.arxiv == "1603.05027"
    assert cnnlab.model_info("resnext50_32x4d").paper.arxiv == "1611.05431"
    assert cnnlab.model_info("wide_resnet50_2").paper.arxiv == "1605.07146"
    assert cnnlab.model_info("se_resnet50").paper.arxiv == "1709.01507"
    assert any("v1.5" in d for d in cnnlab.model_info("resnet50").deviations)
    assert not cnnlab.model_info("resnet50_paper").deviations


def _random_bn_stats(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)


def _assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max() + 1e-6


@pytest.mark.parametrize(("name", "timm_name"), [("se_resnet50", "seresnet50"), ("resnet18", "resnet18")])
def test_timm_state_dict_loads_and_agrees(name: str, timm_name: str, tmp_path):
    timm = pytest.importorskip("timm")
    ref = timm.create_model(timm_name, pretrained=False).eval()
    _random_bn_stats(ref)
    path = tmp_path / "timm.pth"
    torch.save(ref.state_dict(), path)
    assert get_entry(name).family.timm[name] == timm_name
    ours = cnnlab.create_model(name, weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _assert_close(ours(x), ref(x))


def test_preact_resnet50_matches_timm_resnetv2_50():
    """timm's resnetv2_50 is the same network (its head FC is a 1x1 conv, so the weight is reshaped here)."""
    timm = pytest.importorskip("timm")
    import re

    ref = timm.create_model("resnetv2_50", pretrained=False).eval()
    _random_bn_stats(ref)
    state = {}
    for k, v in ref.state_dict().items():
        k = re.sub(r"^stages\.(\d)\.blocks\.(\d+)\.", r"stages.\1.\2.", k)
        k = re.sub(r"\.norm(\d)\.", r".bn\1.", k).replace(".downsample.conv.", ".shortcut.conv.")
        k = re.sub(r"^norm\.", "stages.3.bn.", k)
        state[k] = v.flatten(1) if k == "head.fc.weight" else v
    ours = cnnlab.create_model("preact_resnet50").eval()
    ours.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _assert_close(ours(x), ref(x))


def test_wrong_architecture_weights_fail_clearly(tmp_path):
    from cnnlab.errors import CnnlabError

    path = tmp_path / "r20.pth"
    torch.save(cnnlab.create_model("resnet20").state_dict(), path)
    with pytest.raises(CnnlabError, match="does not fit"):
        cnnlab.create_model("resnet32", weights=path)
    ours = cnnlab.create_model("resnet20", weights=path)  # our own layout round-trips
    assert ours.num_classes == 10
