"""convlab.Conv2d and use_algorithm: whole networks run on our algorithms and give the same answers."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import convlab
from tests.conftest import SHARED


@pytest.mark.parametrize("algorithm", convlab.ALGORITHMS)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_module_matches_nn_conv2d(algorithm, padding_mode):
    ref = nn.Conv2d(6, 4, 3, padding=1, groups=2, padding_mode=padding_mode).double()
    ours = convlab.Conv2d(6, 4, 3, padding=1, groups=2, padding_mode=padding_mode, algorithm=algorithm).double()
    ours.load_state_dict(ref.state_dict())  # same keys, same shapes
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64, requires_grad=True)
    y_ref, y = ref(x), ours(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    (g_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    (g,) = torch.autograd.grad(y.square().sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-10)
    assert f"algorithm='{algorithm}'" in repr(ours)


def test_module_refuses_an_algorithm_it_cannot_run():
    with pytest.raises(ValueError, match="winograd4.*stride"):
        convlab.Conv2d(3, 3, 3, stride=2, algorithm="winograd4")
    with pytest.raises(KeyError, match="did you mean fft"):
        convlab.Conv2d(3, 3, 3, algorithm="ftt")


def _small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=3),  # not eligible for Winograd
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8)),
        nn.Conv2d(8, 4, 1),
    )


def test_use_algorithm_swaps_in_place_and_shares_parameters():
    net = _small_net()
    x = torch.randn(2, 3, 16, 16)
    before = net(x)
    weight = net[2][0].weight
    assert convlab.use_algorithm(net, "winograd2") == 2
    assert isinstance(net[2][0], convlab.Conv2d) and net[2][0].weight is weight  # optimizer state stays valid
    assert type(net[0]) is nn.Conv2d and type(net[3]) is nn.Conv2d
    torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-5)
    assert convlab.use_algorithm(net, "im2col") == 4  # every conv, including the converted ones
    torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-5)
    assert convlab.use_algorithm(net, "torch") == 4
    assert all(m.algorithm == "torch" for m in net.modules() if isinstance(m, convlab.Conv2d))


def test_use_algorithm_on_a_bare_conv():
    conv = convlab.Conv2d(4, 4, 3, padding=1)
    assert convlab.use_algorithm(conv, "winograd6") == 1 and conv.algorithm == "winograd6"
    assert convlab.use_algorithm(convlab.Conv2d(4, 4, 5), "winograd2") == 0  # 5x5: left alone
    with pytest.raises(ValueError, match="root nn.Conv2d"):
        convlab.use_algorithm(nn.Conv2d(4, 4, 3), "im2col")


@functools.cache
def _cifar_batch(n: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    path = SHARED / "data" / "cifar10.npz"
    if not path.is_file():
        pytest.skip("../shared/data/cifar10.npz is absent")
    with np.load(path, allow_pickle=False) as data:
        x = torch.from_numpy(data["x_test"][:n].copy()).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(data["y_test"][:n].astype(np.int64))
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    return (x - mean) / std, y


def _check_network(model: nn.Module, x: torch.Tensor, algorithm: str, expect_swapped: int | None) -> None:
    model.eval()
    with torch.no_grad():
        ref = model(x)
        swapped = convlab.use_algorithm(model, algorithm)
        out = model(x)
    if expect_swapped is not None:
        assert swapped == expect_swapped
    assert swapped > 0
    assert torch.equal(out.argmax(1), ref.argmax(1))
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel < 1e-3, rel


@pytest.mark.parametrize("algorithm", ["winograd4", "winograd6", "im2col"])
def test_torchvision_resnet18_on_real_images(algorithm):
    tv = pytest.importorskip("torchvision")
    x, _ = _cifar_batch()
    torch.manual_seed(0)
    model = tv.models.resnet18(weights=None, num_classes=10)
    # resnet18's 3x3 stride-1 convs: 4 in layer1, 3 in each later stage (their first conv has stride 2).
    expected = {"winograd4": 13, "winograd6": 13, "im2col": 20}[algorithm]
    _check_network(model, x, algorithm, expected)


def test_cnnlab_resnet18_if_available():
    import cnnlab

    try:
        model = cnnlab.create_model("resnet18", num_classes=10)
    except KeyError:
        pytest.skip("cnnlab's resnet18 is not registered yet")
    x, _ = _cifar_batch(4)
    _check_network(model, x, "winograd4", None)
