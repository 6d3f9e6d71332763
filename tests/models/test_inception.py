"""GoogLeNet, Inception-v3, Inception-v4 and Inception-ResNet-v2: aux heads, paper fidelity, honest minimum
input sizes, and timm / torchvision as oracles."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from cnnlab.models.base import AuxOutputs
from cnnlab.nn.conv import ConvBNAct
from cnnlab.nn.inception import Inception

AUX = {"googlenet": 2, "googlenet_paper": 2, "inception_v3": 1}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name, **kw)


def meta_input(model: nn.Module, size: int, n: int = 2) -> torch.Tensor:
    return torch.empty(n, 3, size, size, device="meta")


def randomize_bn(model: nn.Module) -> None:
    """Random BN statistics and affine terms, so that a swapped or misplaced tensor shows in the outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def _train_mode_without_dropout(model: nn.Module) -> nn.Module:
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()  # deterministic; BN keeps using batch statistics
    return model


# --- auxiliary heads --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AUX))
def test_aux_outputs_in_train_mode_only(name: str):
    model = meta_model(name, num_classes=11)
    x = meta_input(model, model.min_input_size)
    out = model.train()(x)
    assert isinstance(out, AuxOutputs)
    assert len(out.aux) == AUX[name]
    assert out.logits.shape == (2, 11) and all(a.shape == (2, 11) for a in out.aux)
    out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 11)


@pytest.mark.parametrize("name", sorted(AUX))
def test_aux_logits_false_drops_the_heads(name: str):
    with_aux = meta_model(name)
    without = meta_model(name, aux_logits=False)
    assert len(without.aux_heads) == 0 and not any("aux" in k for k in without.state_dict())
    assert n_params(with_aux) - n_params(without) == n_params(with_aux.aux_heads) > 0
    out = without.train()(meta_input(without, max(without.min_input_size, 32)))
    assert isinstance(out, torch.Tensor)


def test_published_counts_with_and_without_aux():
    # torchvision's metadata: GoogLeNet's 6,624,904 is without its aux heads, Inception-v3's 27,161,264 with.
    assert n_params(meta_model("googlenet", aux_logits=False)) == 6_624_904
    assert cnnlab.model_info("googlenet").published.params is None  # the default model has aux heads
    assert n_params(meta_model("inception_v3")) == 27_161_264
    assert n_params(meta_model("inception_v4")) == 42_679_816
    assert n_params(meta_model("inception_resnet_v2")) == 55_843_464


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_aux_param_count_matches_torchvision_with_and_without_aux(name: str):
    tv = pytest.importorskip("torchvision.models")
    for aux in (True, False):
        with torch.device("meta"):
            ref = getattr(tv, name)(weights=None, aux_logits=aux, init_weights=False)
        assert n_params(meta_model(name, aux_logits=aux)) == n_params(ref), aux


def test_aux_heads_read_the_right_blocks():
    """aux1 / aux2 are the heads applied to the outputs of 4a / 4d, computed here block by block."""
    model = _train_mode_without_dropout(cnnlab.create_model("googlenet", num_classes=5))
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    h = model.stages[0](model.stem(x))
    taps = {}
    for name, block in model.stages[1].named_children():
        h = block(h)
        taps[name] = h
    torch.testing.assert_close(out.aux[0], model.aux_heads["aux1"](taps["inception4a"]))
    torch.testing.assert_close(out.aux[1], model.aux_heads["aux2"](taps["inception4d"]))
    torch.testing.assert_close(out.logits, model.head(model.stages[2](h)))
    torch.testing.assert_close(model.features(x), model.stages(model.stem(x)))


@pytest.mark.parametrize(("name", "size"), [("googlenet", 96), ("inception_v3", 299)])
def test_aux_outputs_agree_with_torchvision_in_train_mode(name: str, size: int, tmp_path):
    """The eval-mode parity test never runs the aux heads; here both models train-forward the same batch."""
    tv = pytest.importorskip("torchvision.models")
    ref = getattr(tv, name)(weights=None, init_weights=True)
    randomize_bn(ref)
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    ours = _train_mode_without_dropout(cnnlab.create_model(name, weights=tmp_path / "tv.pth"))
    _train_mode_without_dropout(ref)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    # torchvision returns (logits, aux2, aux1) for GoogLeNet and (logits, aux) for v3; cnnlab (logits, (aux1, ...)).
    expected_aux = [expected.aux_logits1, expected.aux_logits2] if name == "googlenet" else [expected.aux_logits]
    for a, b in zip([got.logits, *got.aux], [expected.logits, *expected_aux], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_reset_head_resets_aux_heads():
    model = meta_model("googlenet")
    model.reset_head(3)
    assert model.num_classes == 3
    assert all(h.num_classes == 3 for h in model.aux_heads.values())
    out = model.train()(meta_input(model, 64))
    assert [t.shape[1] for t in (out.logits, *out.aux)] == [3, 3, 3]


def test_transform_input_matches_torchvision():
    tv = pytest.importorskip("torchvision.models")
    ref = tv.googlenet(weights=None, init_weights=False, transform_input=True, aux_logits=False).eval()
    ours = cnnlab.create_model("googlenet", transform_input=True, aux_logits=False).eval()
    ours.load_state_dict({k: v for k, v in zip(ours.state_dict(), ref.state_dict().values())})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="in_chans"):
        cnnlab.create_model("googlenet", transform_input=True, in_chans=1)


# --- honest minimum input sizes ---------------------------------------------------------------------------


def _raw_forward_works(model: nn.Module, size: int, train: bool) -> bool:
    model.train(train)
    saved, model.min_input_size = model.min_input_size, 1  # bypass the check: let the layers judge
    try:
        model(meta_input(model, size))
        return True
    except RuntimeError:
        return False
    finally:
        model.min_input_size = saved


CONFIGS = [(n, {}) for n in ("googlenet", "googlenet_paper", "inception_v3", "inception_v4", "inception_resnet_v2")]
CONFIGS += [(n, {"aux_logits": False}) for n in sorted(AUX)]


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=[f"{n}-{kw}" for n, kw in CONFIGS])
def test_min_input_size_is_the_smallest_that_works(name: str, kw: dict):
    """The declared minimum works in training mode (aux heads included) and one pixel less fails somewhere."""
    model = meta_model(name, **kw)
    m = model.min_input_size
    assert _raw_forward_works(model, m, train=True)
    assert not _raw_forward_works(model, m - 1, train=True)


@pytest.mark.parametrize("last_pool", [2, 3])
@pytest.mark.parametrize("aux_pool", ["adaptive", "paper"])
def test_cifar_stem_min_input_size_is_the_smallest_that_works(last_pool: int, aux_pool: str):
    """On real tensors: at 2-5 px a meta forward accepts pools that a CPU forward refuses."""
    kw = {"stem": "cifar", "stem_channels": 8, "last_pool_kernel": last_pool, "aux_pool": aux_pool}
    model = cnnlab.create_model("googlenet", num_classes=10, **kw).train()
    m, model.min_input_size = model.min_input_size, 1
    with torch.no_grad():
        assert model(torch.zeros(2, 3, m, m)).logits.shape == (2, 10)
        with pytest.raises(RuntimeError):
            model(torch.zeros(2, 3, m - 1, m - 1))


def test_min_input_sizes_match_torchvision_without_aux():
    assert meta_model("googlenet").min_input_size == 15  # torchvision's GoogLeNet min_size
    assert meta_model("inception_v3", aux_logits=False).min_input_size == 75  # torchvision's min_size
    assert meta_model("inception_v3").min_input_size == 299  # its aux head needs the 17x17 map


# --- paper fidelity ---------------------------------------------------------------------------------------


def test_googlenet_paper_has_5x5_lrn_and_no_bn():
    model = meta_model("googlenet_paper")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    blocks = [m for m in model.modules() if isinstance(m, Inception)]
    assert len(blocks) == 9
    assert all(b.branch3[1].conv.kernel_size == (5, 5) and b.branch3[1].conv.bias is not None for b in blocks)
    aux_pools = [m for m in model.aux_heads.modules() if isinstance(m, nn.AvgPool2d)]
    assert [(p.kernel_size, p.stride) for p in aux_pools] == [(5, 3), (5, 3)]
    assert [h.fc1.out_features for h in model.aux_heads.values()] == [1024, 1024]
    assert [h.drop.p for h in model.aux_heads.values()] == [0.7, 0.7]
    tv_style = meta_model("googlenet")
    assert all(b.branch3[1].conv.kernel_size == (3, 3) for b in tv_style.modules() if isinstance(b, Inception))
    assert all(isinstance(m, ConvBNAct) and hasattr(m, "bn") for m in tv_style.stem if isinstance(m, ConvBNAct))


def _macs_by_module(model: nn.Module, size: int) -> dict[str, float]:
    counter = FlopCounterMode(display=False)
    with counter:
        model.eval()(meta_input(model, size, n=1))
    prefix = type(model).__name__ + "."
    return {k.removeprefix(prefix): sum(v.values()) / 2 for k, v in counter.get_flop_counts().items()}


# Table 1's "ops" column, in millions of multiply-adds.
TABLE1_OPS_M = {
    "stages.0.inception3a": 128,
    "stages.0.inception3b": 304,
    "stages.1.inception4a": 73,
    "stages.1.inception4b": 88,
    "stages.1.inception4c": 100,
    "stages.1.inception4d": 119,
    "stages.1.inception4e": 170,
    "stages.2.inception5b": 71,
    "head.fc": 1,
}


def test_googlenet_paper_macs_match_table1_row_by_row():
    macs = _macs_by_module(meta_model("googlenet_paper", aux_logits=False), 224)
    for module, ops_m in TABLE1_OPS_M.items():
        assert abs(macs[module] / 1e6 - ops_m) < 1.0, module
    assert abs((macs["stem.conv2"] + macs["stem.conv3"]) / 1e6 - 360) < 1.0  # Table 1's second row
    # Two rows of Table 1 do not follow from its own widths: conv1 (34M; a 7x7x3x64 conv on 112x112 costs
    # 118M) and 5a (54M; its listed widths give 51.1M). We build the widths, so those rows are off.
    assert macs["stem.conv1"] == 112 * 112 * 7 * 7 * 3 * 64
    assert abs(macs["stages.2.inception5a"] / 1e6 - 51.08) < 0.01
    # The text's "1.5 billion multiply-adds" is the table's sum (1,502M); with conv1's true 118M it is 1.583G.
    assert abs(macs["Global"] - (1502e6 - 34e6 + 118e6 - 54e6 + 51.08e6)) < 1.5e6
    # "about 6.8M parameters" (the params column sums to 6.8M with K = 1024); ours have biases and 5x5s.
    assert abs(n_params(meta_model("googlenet_paper", aux_logits=False)) / 6.8e6 - 1) < 0.03


@pytest.mark.parametrize(("name", "size"), [("googlenet", 224), ("inception_v3", 299)])
def test_macs_match_torchvision_metadata(name: str, size: int):
    published = cnnlab.model_info(name).published.gmacs
    assert round(_macs_by_module(meta_model(name), size)["Global"] / 1e9, 3) == published


# --- timm as the oracle for Inception-v4 and Inception-ResNet-v2 ------------------------------------------


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_timm_state_dict_loads_and_agrees(name: str, tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False, num_classes=10).eval()
    randomize_bn(ref)
    with torch.no_grad():  # non-zero biases on the residual expansions, so a dropped bias would show
        for m in ref.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    ours = cnnlab.create_model(name, weights=path).eval()
    assert ours.num_classes == 10  # taken from the file
    x = torch.randn(2, 3, 107, 107)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
        torch.testing.assert_close(ours.features(x), ref.forward_features(x), rtol=1e-4, atol=1e-5)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * scale + 1e-6


def test_bad_aux_tap_is_a_clear_error():
    with pytest.raises(ValueError, match="4x"):
        meta_model("googlenet", aux_taps=("4a", "4x"))
    with pytest.raises(ValueError, match="9z"):
        meta_model("inception_v3", aux_tap="9z")
