"""Family-specific facts of the classic nets: AlexNet (2012 and torchvision's), ZFNet, VGG, SqueezeNet.

Everything heavy runs on the meta device (shapes only), so these tests cost well under a second each.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab import references
from cnnlab.errors import CnnlabError
from cnnlab.models import squeezenet, vgg
from cnnlab.nn.fire import Fire
from cnnlab.nn.lrn import LRN
from cnnlab.registry import get_entry

CLASSIC = [n for n in cnnlab.list_models() if n.startswith(("alexnet", "zfnet", "vgg", "squeezenet"))]


def meta_model(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name, **kw).eval()


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def record_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, module, output shape) of every conv, pool, linear and LRN layer, in execution order."""
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    kinds = (nn.Conv2d, nn.MaxPool2d, nn.Linear, nn.LocalResponseNorm)
    hooks = [
        m.register_forward_hook(lambda mod, args, out, name=name: seen.append((name, mod, tuple(out.shape))))
        for name, m in model.named_modules()
        if isinstance(m, kinds)
    ]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def macs_torchvision_way(model: nn.Module, size: int) -> int:
    """Multiply-adds of conv and linear weights only (no bias, norm, activation or pooling), as torchvision's
    `_ops` metadata counts them."""
    total = 0
    for _, m, out in record_layers(model, torch.empty(1, 3, size, size, device="meta")):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out[1] * out[2] * out[3] * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    return total


# ---------------------------------------------------------------------------------------------- LRN


def lrn_by_the_formula(a: torch.Tensor, n: int, k: float, alpha: float, beta: float) -> torch.Tensor:
    """Sec. 3.3, one channel at a time: b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta."""
    N = a.shape[1]
    out = torch.empty_like(a)
    for i in range(N):
        lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
        out[:, i] = a[:, i] / (k + alpha * a[:, lo : hi + 1].square().sum(1)) ** beta
    return out


@pytest.mark.parametrize("channels", [1, 3, 8])
def test_lrn_matches_the_papers_formula(channels):
    a = torch.randn(2, channels, 5, 4, dtype=torch.float64) * 30  # large enough that the sum matters
    got = LRN()(a)
    expected = lrn_by_the_formula(a, n=5, k=2.0, alpha=1e-4, beta=0.75)
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)
    assert not torch.allclose(got, a / 2.0**0.75)  # the neighbours really enter


# ------------------------------------------------------------------------------------------ AlexNet


def test_alexnet_paper_two_gpu_groups_and_lrn():
    model = meta_model("alexnet_paper")
    convs = [stage.conv for stage in model.stages]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # conv2, conv4, conv5 see only their own GPU's maps
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.kernel_size[0] for c in convs] == [11, 5, 3, 3, 3]
    # Sec. 3.5: response normalization follows conv1 and conv2 (after the ReLU), max-pooling follows those
    # normalizations and conv5.
    assert [list(dict(stage.named_children())) for stage in model.stages] == [
        ["conv", "relu", "lrn", "pool"],
        ["conv", "relu", "lrn", "pool"],
        ["conv", "relu"],
        ["conv", "relu"],
        ["conv", "relu", "pool"],
    ]
    lrn = model.stages[0].lrn
    assert isinstance(lrn, LRN) and (lrn.n, lrn.k, lrn.paper_alpha, lrn.beta) == (5, 2.0, 1e-4, 0.75)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in meta_model("alexnet").modules())


def test_alexnet_paper_exact_parameter_count():
    # Fig. 2, layer by layer: filters x (input maps seen per filter) x k x k + biases. A filter of a grouped
    # layer sees only half of the previous layer's maps.
    convs = [(96, 3, 11), (256, 96 // 2, 5), (384, 256, 3), (384, 384 // 2, 3), (256, 384 // 2, 3)]
    fcs = [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
    expected = sum(out * (cin * k * k + 1) for out, cin, k in convs) + sum(o * (i + 1) for i, o in fcs)
    assert n_params(meta_model("alexnet_paper")) == expected == 60_965_224  # "60 million parameters"


def test_alexnet_paper_map_sizes_at_227():
    model = meta_model("alexnet_paper")
    shapes = [(n, out[1:]) for n, m, out in record_layers(model, torch.empty(1, 3, 227, 227, device="meta"))]
    convs_pools = [s for n, s in shapes if n.endswith(("conv", "pool"))]
    assert convs_pools == [
        (96, 55, 55),
        (96, 27, 27),
        (256, 27, 27),
        (256, 13, 13),
        (384, 13, 13),
        (384, 13, 13),
        (256, 13, 13),
        (256, 6, 6),
    ]


def test_alexnet_paper_refuses_an_input_its_fc6_cannot_read():
    model = meta_model("alexnet_paper")
    with pytest.raises(ValueError, match="6x6.*7x7.*adaptive_pool=True"):
        model(torch.empty(1, 3, 260, 260, device="meta"))
    flexible = meta_model("alexnet_paper", adaptive_pool=True)
    assert flexible(torch.empty(1, 3, 260, 260, device="meta")).shape == (1, 1000)


def test_alexnet_paper_init():
    torch.manual_seed(0)
    model = cnnlab.create_model("alexnet_paper", fc=(512, 512))  # narrow fc6/fc7: same rule, cheaper
    layers = [stage.conv for stage in model.stages] + [m for m in model.head.hidden if isinstance(m, nn.Linear)]
    layers.append(model.head.fc)
    # Sec. 5: biases 1 in conv2, conv4, conv5 and the two hidden FC layers, 0 elsewhere; weights N(0, 0.01).
    assert [float(m.bias.detach().mean()) for m in layers] == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    for m in layers:
        assert abs(float(m.weight.detach().std()) - 0.01) < 1e-3
    model.reset_head(10)
    assert abs(float(model.head.fc.weight.detach().std()) - 0.01) < 2e-3


def test_alexnet_per_layer_table_of_the_lecture():
    """EECS 498 Lecture 8 (references.toml, alexnet_lecture): torchvision's AlexNet at 227 -- output shape, params
    and MACs of every conv and fc."""
    rows = {
        layer: (tuple(row["output"]), row["params"], row["macs"])
        for layer, row in references.published("alexnet_lecture").items()
        if re.match(r"(conv|fc)\d", layer)
    }
    assert len(rows) == 8
    model = meta_model("alexnet")
    got = {}
    layers = [(n, m, o) for n, m, o in record_layers(model, torch.empty(1, 3, 227, 227, device="meta"))]
    weighted = [(m, o) for _, m, o in layers if isinstance(m, (nn.Conv2d, nn.Linear))]
    names = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    for name, (m, out) in zip(names, weighted):
        if isinstance(m, nn.Conv2d):
            macs = out[1] * out[2] * out[3] * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            macs = m.in_features * m.out_features
        got[name] = (out[1:], n_params(m), macs)
    assert got == rows


# -------------------------------------------------------------------------------------------- ZFNet


def test_zfnet_feature_map_sizes_of_fig3():
    """Zeiler & Fergus 2013, Fig. 3: 110-55-26-13-13-13-13-6 at 224 (conv1, pool1, conv2, pool2, conv3-5, pool5)."""
    model = meta_model("zfnet")
    layers = record_layers(model, torch.empty(1, 3, 224, 224, device="meta"))
    sizes = [out[2] for n, m, out in layers if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]
    convs = [stage.conv for stage in model.stages]
    assert [(c.kernel_size[0], c.stride[0]) for c in convs][:2] == [(7, 2), (5, 2)]  # AlexNet's: 11/4, 5/1
    assert [c.out_channels for c in convs] == [96, 256, 512, 1024, 512]
    assert all(c.groups == 1 for c in convs)  # dense connections: one GPU (Sec. 3)
    # conv -> ReLU -> pool -> contrast normalization (Fig. 3), unlike AlexNet's normalize-then-pool.
    assert list(dict(model.stages[0].named_children())) == ["conv", "relu", "pool", "lrn"]


def test_zfnet_exact_parameter_count():
    convs = [(96, 3, 7), (256, 96, 5), (512, 256, 3), (1024, 512, 3), (512, 1024, 3)]
    fcs = [(512 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
    expected = sum(out * (cin * k * k + 1) for out, cin, k in convs) + sum(o * (i + 1) for i, o in fcs)
    assert n_params(meta_model("zfnet")) == expected


# ---------------------------------------------------------------------------------------------- VGG


@pytest.mark.parametrize(("name", "weight_layers"), [("vgg11", 11), ("vgg13", 13), ("vgg16", 16), ("vgg19", 19)])
@pytest.mark.parametrize("bn", [False, True])
def test_vgg_configurations_of_table1(name, weight_layers, bn):
    full = f"{name}_bn" if bn else name
    model = meta_model(full)
    config = get_entry(full).spec.config
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == weight_layers
    assert [c.out_channels for c in convs] == [v for v in config if v != "M"]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) for c in convs)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == (len(convs) if bn else 0)
    assert [m.out_features for m in linears] == [4096, 4096, 1000]
    drops = [m for m in model.head.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.5, 0.5]


def test_vgg_deeper_columns_extend_shallower_ones():
    """Table 1: B adds a conv to stages 1-2 of A, D a third conv to stages 3-5, E a fourth."""

    def per_stage(name: str) -> list[int]:
        return [sum(isinstance(m, nn.Conv2d) for m in s.modules()) for s in meta_model(name).stages]

    assert per_stage("vgg11") == [1, 1, 2, 2, 2]
    assert per_stage("vgg13") == [2, 2, 2, 2, 2]
    assert per_stage("vgg16") == [2, 2, 3, 3, 3]
    assert per_stage("vgg19") == [2, 2, 4, 4, 4]


def test_vgg_dropout_override():
    model = meta_model("vgg16", dropout=0.1)
    assert [m.p for m in model.head.modules() if isinstance(m, nn.Dropout)] == [0.1, 0.1]


# ------------------------------------------------------------------------------------------- SqueezeNet


def test_fire_module_shapes_and_output():
    torch.manual_seed(0)
    fire = Fire(96, 16, 64, 64)
    x = torch.randn(2, 96, 9, 7)
    y = fire(x)
    assert y.shape == (2, 128, 9, 7)
    s = torch.relu(fire.squeeze(x))
    assert torch.equal(y[:, :64], torch.relu(fire.expand1x1(s)))
    assert torch.equal(y[:, 64:], torch.relu(fire.expand3x3(s)))


def test_squeezenet_table1_map_sizes_and_head():
    model = meta_model("squeezenet1_0")
    layers = record_layers(model, torch.empty(1, 3, 227, 227, device="meta"))
    # Table 1 at the Caffe crop of 227: conv1 111, maxpool1 55, maxpool4 27, maxpool8 13, conv10 13x13x1000.
    assert layers[0][2][1:] == (96, 111, 111)
    assert [out[2] for _, m, out in layers if isinstance(m, nn.MaxPool2d)] == [55, 27, 13]
    assert layers[-1][1] is model.head.fc and layers[-1][2][1:] == (1000, 13, 13)
    fires = [m for m in model.modules() if isinstance(m, Fire)]
    assert len(fires) == 8 and [f.out_channels for f in fires] == [128, 128, 256, 256, 384, 384, 512, 512]
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # no fully connected layer
    model.reset_head(10)
    assert isinstance(model.head.fc, nn.Conv2d) and model.head.fc.out_channels == 10
    assert model(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 10)


# -------------------------------------------------------------------------------------- every classic


def test_classic_names_are_registered():
    expected = {"alexnet", "alexnet_paper", "zfnet", "squeezenet1_0", "squeezenet1_1"}
    expected |= {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
    assert set(CLASSIC) == expected


@pytest.mark.parametrize("name", CLASSIC)
def test_min_input_size_is_tight(name):
    """The analytic minimum (walking the layer table backwards) against the network itself: with the input
    check switched off, the minimum runs and one pixel less fails inside the layers."""
    model = meta_model(name)
    m = model.min_input_size
    model.min_input_size = 1  # switch check_input off; the layers alone decide
    assert model(torch.empty(1, 3, m, m, device="meta")).shape == (1, 1000)
    with pytest.raises((RuntimeError, ValueError)):
        model(torch.empty(1, 3, m - 1, m - 1, device="meta"))


CIFAR_ALEXNET = {
    "convs": [[64, 5, 1, 2, 1, ["lrn", "pool"]], [128, 5, 1, 2, 1, ["pool"]], [192, 3, 1, 1, 1, ["pool"]]],
    "fc": [64],
    "map_size": 4,
    "pool_ceil": True,
    "resolution": 32,
}


@pytest.mark.parametrize("pool", [(3, 2), (2, 2), (3, 3)])
@pytest.mark.parametrize("ceil", [True, False])
def test_alexnet_pool_knob_min_input_size_is_tight(pool, ceil):
    model = meta_model("alexnet", **{**CIFAR_ALEXNET, "pool": list(pool), "pool_ceil": ceil})
    m = model.min_input_size
    model.min_input_size = 1
    assert model(torch.empty(1, 3, m, m, device="meta")).shape == (1, 1000)
    with pytest.raises((RuntimeError, ValueError)):
        model(torch.empty(1, 3, m - 1, m - 1, device="meta"))
    assert all(p.kernel_size == pool[0] and p.stride == pool[1] for p in model.modules() if isinstance(p, nn.MaxPool2d))


def test_alexnet_tanh_replaces_every_relu():
    relu = meta_model("alexnet", **CIFAR_ALEXNET)
    tanh = meta_model("alexnet", **CIFAR_ALEXNET, activation="tanh")
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules())
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == sum(isinstance(m, nn.ReLU) for m in relu.modules())
    assert tanh.state_dict().keys() == relu.state_dict().keys()


def test_alexnet_kaiming_init_has_fan_in_variance_and_zero_biases():
    torch.manual_seed(0)
    model = cnnlab.create_model("alexnet", **CIFAR_ALEXNET, init="kaiming")
    conv = model.stages[1].conv  # 64 -> 128 channels, 5x5: fan_in 1600, std sqrt(2 / 1600)
    assert conv.weight.detach().std().item() == pytest.approx((2 / conv.weight[0].numel()) ** 0.5, rel=0.02)
    assert all(float(m.bias.abs().max()) == 0 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("bad", [{"activation": "gelu"}, {"pool": [3]}, {"pool": [0, 2]}, {"init": "xavier"}])
def test_alexnet_bad_knobs_are_one_line(bad):
    with pytest.raises((CnnlabError, ValueError)) as e:  # the CLI prints either as one line
        cnnlab.create_model("alexnet", **CIFAR_ALEXNET, **bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", [n for n in CLASSIC if cnnlab.model_info(n).published.gmacs is not None])
def test_published_gmacs(name):
    info = cnnlab.model_info(name)
    published = info.published.gmacs
    gmacs = macs_torchvision_way(meta_model(name), info.input_size[1]) / 1e9
    digits = len(str(published).split(".")[1])
    assert round(gmacs, digits) == published, gmacs


@pytest.mark.parametrize("name", CLASSIC)
def test_dropout_is_a_spec_field(name):
    assert get_entry(name).spec.dropout == 0.5
    model = meta_model(name, dropout=0.25)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.25}


@pytest.mark.parametrize("name", [n for n in CLASSIC if n in get_entry(n).family.torchvision])
def test_torchvision_key_rules_cover_every_tensor(name):
    """Cheap check of the key maps on the meta device; test_torchvision_parity compares real outputs."""
    tv_models = pytest.importorskip("torchvision.models")
    family = get_entry(name).family
    with torch.device("meta"):
        ref = getattr(tv_models, family.torchvision[name])(weights=None)
    ours = meta_model(name)
    rules = family.torchvision_keys(ours) if callable(family.torchvision_keys) else family.torchvision_keys
    compiled = [(re.compile(p), r) for p, r in rules]
    renamed = {}
    for key, t in ref.state_dict().items():
        rule = next(((p, r) for p, r in compiled if p.search(key)), None)
        renamed[rule[0].sub(rule[1], key) if rule else key] = tuple(t.shape)
    assert renamed == {k: tuple(t.shape) for k, t in ours.state_dict().items()}


@pytest.mark.parametrize(("module", "name"), [(vgg, "vgg11"), (vgg, "vgg19_bn"), (squeezenet, "squeezenet1_1")])
def test_key_rules_depend_on_the_variant(module, name):
    """torchvision's flat `features` numbering differs per variant: the rules are generated from the spec."""
    other = {"vgg11": "vgg19", "vgg19_bn": "vgg11_bn", "squeezenet1_1": "squeezenet1_0"}[name]
    assert module.torchvision_keys_for(get_entry(name).spec) != module.torchvision_keys_for(get_entry(other).spec)


def test_adaptive_pool_is_the_identity_at_the_design_size():
    """torchvision's adaptive pool (a deviation) changes nothing at 224, where pool5 is already 6x6."""
    torch.manual_seed(0)
    small = {"fc": (64, 64), "num_classes": 10}  # the claim is about the pool; narrow FC layers keep it cheap
    flexible = cnnlab.create_model("alexnet", **small).eval()
    fixed = cnnlab.create_model("alexnet", adaptive_pool=False, **small).eval()
    fixed.load_state_dict(flexible.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(flexible(x), fixed(x))
    with pytest.raises(ValueError, match="adaptive_pool"):
        fixed(torch.randn(1, 3, 260, 260))  # pool5 is 7x7


def receptive_fields(model: nn.Module, size: int) -> list[int]:
    """Receptive field after every conv and pool of a chain: r += (k - 1) * j, j *= s (Araujo et al. 2019)."""
    r, j, out = 1, 1, []
    for _, m, _ in record_layers(model, torch.empty(1, 3, size, size, device="meta")):
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            r, j = r + (k - 1) * j, j * s
            out.append(r)
    return out


def test_receptive_fields_of_references_section4():
    alexnet = receptive_fields(meta_model("alexnet"), 224)
    assert alexnet[:2] == [11, 19] and alexnet[-1] == 195
    vgg16 = receptive_fields(meta_model("vgg16"), 224)
    assert vgg16[-2:] == [196, 212]  # conv5_3, pool5
