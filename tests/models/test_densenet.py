"""DenseNet-BC facts (Huang et al. 2017, Table 1): growth, concatenation, compression, torchvision key map."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.densenet import SPECS
from cnnlab.nn.dense import DenseBlock, DenseLayer, Transition


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name, **kw)


def conv_linear_macs(model: nn.Module, size: tuple[int, int, int]) -> int:
    """torchvision's `_ops` rule: conv and linear weight multiply-adds only, batch 1."""
    total = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.empty(1, *size, device="meta"))
    for h in handles:
        h.remove()
    return total


# Table 1 plus the BC rules, worked by hand: block i adds L_i * k maps, each transition halves them.
STAGE_CHANNELS = {
    "densenet121": (256, 512, 1024, 1024),
    "densenet169": (256, 512, 1280, 1664),
    "densenet201": (256, 512, 1792, 1920),
    "densenet161": (384, 768, 2112, 2208),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_stage_channels_follow_table_1(name: str):
    expected = STAGE_CHANNELS[name]
    model = meta_model(name)
    assert tuple(s.channels for s in model.stage_info) == expected
    assert tuple(s.stride for s in model.stage_info) == (4, 8, 16, 32)
    spec = SPECS[name]
    blocks = [m for m in model.modules() if isinstance(m, DenseBlock)]
    assert [len(list(b.children())) for b in blocks] == list(spec.block_config)
    assert model.head.fc.in_features == expected[-1]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_published_gmacs(name: str):
    published = cnnlab.model_info(name).published
    macs = conv_linear_macs(meta_model(name), (3, 224, 224))
    digits = len(str(published.gmacs).split(".")[1])
    assert round(macs / 1e9, digits) == pytest.approx(published.gmacs, abs=1e-9)


def test_dense_connectivity_and_bottleneck():
    k, c0 = 12, 20
    block = DenseBlock(4, c0, k, bn_size=4).eval()
    for i, layer in enumerate(block.children()):
        assert isinstance(layer, DenseLayer)
        assert layer.conv1.in_channels == c0 + i * k  # sees every earlier map (Eq. 2)
        assert layer.conv1.out_channels == 4 * k  # DenseNet-B: 4k maps from the 1x1
        assert layer.conv2.out_channels == k
    x = torch.randn(2, c0, 6, 6)
    with torch.no_grad():
        y = block(x)
        assert y.shape == (2, c0 + 4 * k, 6, 6)
        assert torch.equal(y[:, :c0], x)  # concatenation keeps the input untouched
        first = block.layer1(x)
        assert torch.equal(y[:, c0 : c0 + k], first)
        assert torch.equal(y[:, c0 + k : c0 + 2 * k], block.layer2(torch.cat([x, first], 1)))


def test_transition_compresses_by_half_and_pools():
    model = meta_model("densenet121")
    transitions = [m for m in model.modules() if isinstance(m, Transition)]
    assert len(transitions) == 3
    for t in transitions:
        assert t.conv.out_channels == t.conv.in_channels // 2  # theta = 0.5
        assert isinstance(t.pool, nn.AvgPool2d) and t.pool.kernel_size == 2
    half = meta_model("densenet121", compression=1.0)  # DenseNet-B without C keeps every map
    assert half.stage_info[1].channels == 256 + 12 * 32


def test_ends_with_bn_relu_before_pooling():
    model = cnnlab.create_model("densenet121").eval()
    assert isinstance(model.stages[-1].bn, nn.BatchNorm2d)
    with torch.no_grad():
        assert (model.features(torch.randn(1, 3, 32, 32)) >= 0).all()


def test_torchvision_keys_map_onto_ours_exactly():
    tv = pytest.importorskip("torchvision.models")
    from cnnlab.weights import map_foreign_keys

    with torch.device("meta"):
        ref = tv.densenet121(weights=None)
    ours = meta_model("densenet121")
    mapped = map_foreign_keys(cnnlab.registry.get_entry("densenet121").family, ref.state_dict(), ours)
    assert set(mapped) == set(ours.state_dict())
    assert all(tuple(mapped[k].shape) == tuple(v.shape) for k, v in ours.state_dict().items())
    assert n_params(ours) == n_params(ref)


def test_bad_specs_raise():
    with pytest.raises(ValueError, match="compression"):
        cnnlab.create_model("densenet121", compression=0.0)
    with pytest.raises(ValueError, match="block_config"):
        cnnlab.create_model("densenet121", block_config=())
    with pytest.raises(TypeError, match="growth"):
        cnnlab.create_model("densenet121", growth=12)


def test_layer_dropout_only_in_training():
    layer = DenseLayer(8, 4, drop_rate=0.5)
    x = torch.randn(2, 8, 4, 4)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))


def test_timm_state_dict_loads_and_agrees(tmp_path):
    timm = pytest.importorskip("timm")
    ref = timm.create_model("densenet121", pretrained=False).eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):  # random statistics, so a swapped mean/var would show
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "timm.pth"
    torch.save(ref.state_dict(), path)
    ours = cnnlab.create_model("densenet121", weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = ref(x)
        assert (ours(x) - expected).abs().max() <= 1e-5 * expected.abs().max() + 1e-6
