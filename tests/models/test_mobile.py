"""The mobile families: MobileNet v1/v2, EfficientNet (compound scaling), ShuffleNet V2, and their blocks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from cnnlab.models.efficientnet import (
    TABLE,
    EfficientNet,
    compound_scaling,
    efficientnet_overrides,
    efficientnet_spec,
)
from cnnlab.nn.depthwise import DepthwiseSeparable, separable_macs
from cnnlab.nn.mbconv import MBConv, StochasticDepth, round_channels, stochastic_depth
from cnnlab.nn.shuffle import ShuffleV2Block, channel_shuffle
from cnnlab.registry import get_entry
from cnnlab.weights import map_foreign_keys

MOBILE = [n for pat in ("mobilenet*", "efficientnet*", "shufflenet*") for n in cnnlab.list_models(pat)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, size: int) -> float:
    """Conv + linear multiply-adds counted by PyTorch's FlopCounterMode (2 FLOPs per MAC), on the meta device."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops() / 2


def meta(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name, **overrides)


# --- MobileNet v1: Tables 6 and 7 of Howard et al. 2017 (arXiv:1704.04861) ---------------------------------------

V1_ALPHA = {  # name: (params in millions, MACs in millions at 224), Table 6
    "mobilenet_v1": (4.2, 569),
    "mobilenet_v1_075": (2.6, 325),
    "mobilenet_v1_050": (1.3, 149),
    "mobilenet_v1_025": (0.5, 41),
}


@pytest.mark.parametrize("name", list(V1_ALPHA))
def test_mobilenet_v1_width_multiplier_table(name):
    params_m, macs_m = V1_ALPHA[name]
    model = meta(name)
    assert round(n_params(model) / 1e6, 1) == params_m
    got = macs(model, 224)
    assert abs(got / 1e6 - macs_m) < 1.0  # the paper rounds to the million
    assert round(got / 1e9, 3) == cnnlab.model_info(name).published.gmacs


@pytest.mark.parametrize(("resolution", "macs_m"), [(224, 569), (192, 418), (160, 290), (128, 186)])
def test_mobilenet_v1_resolution_multiplier_table(resolution, macs_m):
    model = meta("mobilenet_v1", resolution=resolution)
    assert cnnlab.model_info("mobilenet_v1").input_size == (3, 224, 224)
    # rho changes the cost, never the parameters (Sec. 3.4).
    assert n_params(model) == 4_231_976
    # Table 7 prints 290 for 290.68M: the paper truncates or rounds, so within one million.
    assert abs(macs(model, resolution) / 1e6 - macs_m) < 1.0


def test_mobilenet_v1_layers_follow_table1():
    model = meta("mobilenet_v1")
    blocks = [m for m in model.modules() if isinstance(m, DepthwiseSeparable)]
    assert len(blocks) == 13
    assert [b.pw.conv.out_channels for b in blocks] == [64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]
    assert [b.dw.conv.stride[0] for b in blocks] == [1, 2, 1, 2, 1, 2] + [1] * 5 + [2, 1]
    assert [i.stride for i in model.stage_info] == [2, 4, 8, 16, 32]
    with pytest.raises(ValueError, match="alpha"):
        cnnlab.create_model("mobilenet_v1", alpha=0.0)


def test_depthwise_separable_cost_matches_counted_macs():
    # Sec. 3.1: a 3x3 layer 512 -> 512 on 14x14 costs 1/N + 1/D_K^2 of a standard conv.
    separable, standard = separable_macs(3, 512, 512, 14)
    assert separable / standard == pytest.approx(1 / 512 + 1 / 9)
    block = DepthwiseSeparable(512, 512).to("meta")
    counter = FlopCounterMode(display=False)
    with counter:
        block(torch.empty(1, 512, 14, 14, device="meta"))
    assert counter.get_total_flops() // 2 == separable


@pytest.mark.parametrize("name", [n for n in MOBILE if n != "mobilenet_v1_conv"])  # Table 4's full-conv twin
def test_depthwise_convs_have_one_group_per_channel(name):
    model = meta(name)
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert grouped, "a mobile network without depthwise convolutions"
    for conv in grouped:
        assert conv.groups == conv.in_channels == conv.out_channels
        assert conv.weight.shape[1] == 1


# --- MobileNetV2 ------------------------------------------------------------------------------------------------


def test_mobilenet_v2_rows_and_rounding():
    model = meta("mobilenet_v2")
    assert [i.channels for i in model.stage_info] == [16, 24, 32, 64, 96, 160, 320, 1280]
    assert [len(s) for s in list(model.stages)[:-1]] == [1, 2, 3, 4, 3, 3, 1]
    # A width multiplier rounds channels to multiples of 8 and keeps the last conv at 1280 when < 1 (Sec. 6.1).
    thin = meta("mobilenet_v2", width=0.35)
    assert all(i.channels % 8 == 0 for i in thin.stage_info)
    assert thin.stage_info[-1].channels == 1280
    # Nearest multiple of 8, at least 8, never more than 10% below: 11.9 would round to 8, so it goes up to 16.
    assert [round_channels(c) for c in (3.9, 11.9, 12, 35.2, 36)] == [8, 16, 16, 32, 40]


# --- EfficientNet: the compound-scaling rule against the published table ----------------------------------------


def test_compound_rule_constraint():
    # Sec. 3.3: alpha * beta^2 * gamma^2 ~ 2, so the MACs grow by about 2^phi.
    d, w, r = compound_scaling(1.0)
    assert d * w**2 * r**2 == pytest.approx(2.0, rel=0.05)
    assert compound_scaling(0.0) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(("name", "phi"), [("efficientnet_b0", 0), ("efficientnet_b1", 0.5),
                                          ("efficientnet_b2", 1), ("efficientnet_b3", 2)])  # fmt: skip
def test_compound_rule_reproduces_b0_to_b3(name, phi):
    width, depth, resolution, _ = TABLE[name]
    d, w, r = compound_scaling(phi)
    assert (round(w, 1), round(d, 1)) == (width, depth)  # the table's coefficients have one decimal
    assert 224 * r == pytest.approx(resolution, rel=0.02)  # and its resolutions are rounded further


def test_published_b4_to_b7_go_beyond_a_single_phi():
    """B4-B7 were tuned: the phi implied by depth, width and resolution differ, yet all grow with the index."""
    implied = []
    for width, depth, resolution, _ in TABLE.values():
        implied.append(
            (
                math.log(depth) / math.log(1.2),
                math.log(width) / math.log(1.1),
                math.log(resolution / 224) / math.log(1.15),
            )
        )
    for a, b in zip(implied, implied[1:]):
        assert all(x <= y for x, y in zip(a, b))
    b7 = implied[-1]
    assert max(b7) - min(b7) > 1.0  # no single phi for B7 (6.2 from depth, 7.3 from width)


def test_compound_rule_builds_a_new_phi():
    # phi = 1 gives exactly B2's width and depth coefficients, hence B2's network.
    with torch.device("meta"):
        b2_rule = EfficientNet(efficientnet_spec(1.0))
    assert n_params(b2_rule) == cnnlab.model_info("efficientnet_b2").published.params
    over = efficientnet_overrides(1.5)
    assert over["resolution"] == round(224 * 1.15**1.5)
    model = meta("efficientnet_b0", **over)
    assert cnnlab.model_info("efficientnet_b0").published.params < n_params(model) < n_params(b2_rule) * 1.5
    costs = []
    for phi in (0, 1, 1.5, 2):
        with torch.device("meta"):
            costs.append(macs(EfficientNet(efficientnet_spec(phi)), efficientnet_spec(phi).resolution))
    assert costs == sorted(costs)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b7"])
def test_efficientnet_macs_at_eval_crop(name):
    info = cnnlab.model_info(name)
    assert round(macs(meta(name), info.input_size[1]) / 1e9, 3) == info.published.gmacs


def test_mbconv_se_width_follows_block_input():
    block = MBConv(40, 80, 3, 2, 6)
    assert block.se.fc1.out_channels == 10  # 40 / 4, not 240 / 4
    assert block.expand.conv.out_channels == 240
    assert not block.use_shortcut


# --- Stochastic depth and channel shuffle -----------------------------------------------------------------------


def test_stochastic_depth_is_identity_in_eval():
    x = torch.randn(8, 4, 3, 3)
    sd = StochasticDepth(0.5).eval()
    assert torch.equal(sd(x), x)
    assert torch.equal(stochastic_depth(x, 0.0, training=True), x)
    block = MBConv(16, 16, 3, 1, 6, drop_path=0.9).eval()
    y = torch.randn(2, 16, 5, 5)
    assert torch.equal(block(y), block(y))


def test_stochastic_depth_drops_whole_samples_and_keeps_the_mean():
    x = torch.ones(20_000, 2, 2, 2)
    out = stochastic_depth(x, 0.3, training=True)
    per_sample = out.flatten(1)
    kept = torch.isclose(per_sample, torch.tensor(1 / 0.7)).all(1)
    assert torch.all((per_sample == 0).all(1) | kept)
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert out.mean().item() == pytest.approx(1.0, abs=0.03)
    with pytest.raises(ValueError, match="probability"):
        StochasticDepth(1.5)


@pytest.mark.parametrize(("channels", "groups"), [(6, 2), (12, 3), (116, 2), (8, 8)])
def test_channel_shuffle_is_a_permutation(channels, groups):
    x = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1).expand(2, channels, 3, 3)
    out = channel_shuffle(x.contiguous(), groups)
    order = out[0, :, 0, 0].long().tolist()
    assert sorted(order) == list(range(channels))
    per_group = channels // groups
    # Position i * groups + g holds channel g * (C / g) + i: the groups interleave.
    assert order == [g * per_group + i for i in range(per_group) for g in range(groups)]
    # Shuffling with C / groups groups undoes it.
    assert torch.equal(channel_shuffle(out, per_group), x)
    with pytest.raises(ValueError, match="groups"):
        channel_shuffle(torch.zeros(1, 5, 1, 1), 2)


def test_shufflenet_unit_shapes():
    down, same = ShuffleV2Block(24, 116, 2), ShuffleV2Block(116, 116, 1)
    y = down(torch.randn(2, 24, 8, 8))
    assert y.shape == (2, 116, 4, 4)
    assert same(y).shape == y.shape
    with pytest.raises(ValueError, match="keeps its width"):
        ShuffleV2Block(24, 116, 1)


# --- torchvision as the oracle ------------------------------------------------------------------------------------

TV = [n for n in MOBILE if n in get_entry(n).family.torchvision]


@pytest.mark.parametrize("name", TV)
def test_torchvision_layout_matches_layer_by_layer(name):
    """On the meta device (no memory, no compute): after the key map, every tensor has the same name and shape,
    and every conv and BatchNorm has the same hyper-parameters (stride, padding, groups, eps, momentum)."""
    tv_models = pytest.importorskip("torchvision.models")
    family = get_entry(name).family
    with torch.device("meta"):
        ref = getattr(tv_models, family.torchvision[name])(weights=None)
    ours = meta(name)
    ref_state = ref.state_dict()
    mapped = map_foreign_keys(family, ref_state, ours)
    own = ours.state_dict()
    assert list(mapped) == list(own)  # also the same order: the key map is a bijection
    assert all(mapped[k].shape == own[k].shape for k in own)
    rename = dict(zip(ref_state, mapped))
    ours_modules = dict(ours.named_modules())
    for tv_name, module in ref.named_modules():
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            mine = ours_modules[rename[f"{tv_name}.weight"].removesuffix(".weight")]
            attrs = (
                ("stride", "padding", "groups", "dilation") if isinstance(module, nn.Conv2d) else ("eps", "momentum")
            )
            assert [getattr(mine, a) for a in attrs] == [getattr(module, a) for a in attrs], (tv_name, attrs)


def test_conv_mobilenet_is_table4s_full_convolution_twin():
    """Howard et al. 2017, Table 4: "Conv MobileNet" 29.3M parameters, 4866M MACs; the separable one 4.2M, 569M.

    Our count is 4,867.3M MACs, 1.3M (0.03%) above the paper's; the paper does not say how it counted, so the
    test holds the rounded parameters exactly and the MACs to 0.05%."""
    full, sep = cnnlab.analyze("mobilenet_v1_conv"), cnnlab.analyze("mobilenet_v1")
    assert round(full.total_params / 1e6, 1) == 29.3
    published = 4_866e6  # Table 4 (not in Published: its rounding checks are exact)
    assert abs(full.total_macs - published) / published < 5e-4
    assert full.total_params > 6.9 * sep.total_params and full.total_macs > 8.5 * sep.total_macs
