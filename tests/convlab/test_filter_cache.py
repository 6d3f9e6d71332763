"""Precomputed Winograd filters: the functional `transformed_weight=` path, and convlab.Conv2d's opt-in cache,
which must never serve filters older than the weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import convlab
from cnnlab.convlab import winograd


@pytest.mark.parametrize("tile", [2, 4, 6])
@pytest.mark.parametrize("groups", [1, 2])
def test_transformed_weight_gives_the_same_result(tile, groups):
    x = torch.randn(2, 8, 11, 9, dtype=torch.float64)
    w = torch.randn(6, 8 // groups, 3, 3, dtype=torch.float64)
    u = convlab.transform_filters(w, tile, groups)
    fresh = convlab.conv2d_winograd(x, w, padding=1, groups=groups, tile=tile)
    reused = convlab.conv2d_winograd(x, w, padding=1, groups=groups, tile=tile, transformed_weight=u)
    assert torch.equal(fresh, reused)
    torch.testing.assert_close(reused, F.conv2d(x, w, padding=1, groups=groups), rtol=0, atol=1e-10)


def test_transformed_weight_of_the_wrong_shape_or_dtype_is_refused():
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    with pytest.raises(ValueError, match=r"transformed_weight has shape .*needs \(36, 1, 4, 4\)"):
        convlab.conv2d_winograd(x, w, padding=1, tile=4, transformed_weight=convlab.transform_filters(w, 2))
    with pytest.raises(ValueError, match="float64 .* input is torch.float32"):
        convlab.conv2d_winograd(x, w, tile=4, transformed_weight=convlab.transform_filters(w.double(), 4))
    with pytest.raises(ValueError, match="tile=5"):
        convlab.transform_filters(w, 5)
    with pytest.raises(ValueError, match="3, 3"):
        convlab.transform_filters(torch.randn(4, 4, 5, 5))


def _counting(monkeypatch) -> list[int]:
    calls = []
    original = winograd.weight_transform

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(winograd, "weight_transform", counted)
    return calls


def test_module_cache_is_used_for_inference_and_refreshed_when_the_weight_changes(monkeypatch):
    calls = _counting(monkeypatch)
    torch.manual_seed(0)
    ref = nn.Conv2d(8, 8, 3, padding=1).double().eval()
    conv = convlab.Conv2d.from_conv(ref, "winograd4", cache_filters=True)
    x = torch.randn(2, 8, 10, 10, dtype=torch.float64)

    def agrees() -> None:
        with torch.no_grad():
            torch.testing.assert_close(conv(x), ref(x), rtol=0, atol=1e-9)

    agrees()
    agrees()
    assert len(calls) == 1  # computed once, then reused

    with torch.no_grad():  # an in-place update bumps the version counter (what optimizers do)
        ref.weight.mul_(-2)
    agrees()
    assert len(calls) == 2

    ref.load_state_dict({"weight": torch.randn_like(ref.weight), "bias": ref.bias.detach().clone()})
    agrees()
    assert len(calls) == 3

    new = nn.Parameter(torch.randn_like(ref.weight))
    ref.weight = conv.weight = new  # a replaced Parameter
    agrees()
    assert len(calls) == 4

    conv.float()
    ref.float()
    with torch.no_grad():
        torch.testing.assert_close(conv(x.float()), ref(x.float()), rtol=1e-4, atol=1e-4)
    assert len(calls) == 5

    ref.weight.data.mul_(3)  # invisible to the version counter: documented, cleared by hand
    conv.clear_filter_cache()
    with torch.no_grad():
        torch.testing.assert_close(conv(x.float()), ref(x.float()), rtol=1e-4, atol=1e-4)


def test_module_cache_is_not_used_when_a_gradient_is_wanted(monkeypatch):
    calls = _counting(monkeypatch)
    conv = convlab.Conv2d(4, 4, 3, padding=1, algorithm="winograd2", cache_filters=True).double()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    for _ in range(2):
        conv(x).sum().backward()
    assert len(calls) == 2 and conv._filter_cache is None
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_cache_is_off_by_default_and_use_algorithm_turns_it_on(monkeypatch):
    calls = _counting(monkeypatch)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
    x = torch.randn(1, 3, 8, 8)
    assert convlab.use_algorithm(model, "winograd4") == 2
    with torch.no_grad():
        model(x), model(x)
    assert len(calls) == 4
    assert convlab.use_algorithm(model, "winograd4", cache_filters=True) == 2
    with torch.no_grad():
        model(x), model(x)
    assert len(calls) == 6


def test_channels_last_input_gives_channels_last_output():
    x = torch.randn(2, 16, 14, 14, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 16, 3, 3, dtype=torch.float64)
    for tile in (2, 4, 6):  # 14 is a whole number of tiles for 2 only: the crop path is covered too
        y = convlab.conv2d_winograd(x, w, padding=1, tile=tile)
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, F.conv2d(x, w, padding=1), rtol=0, atol=1e-9)
        y = convlab.conv2d_winograd(x.contiguous(), w, padding=1, tile=tile)
        assert y.is_contiguous()


@pytest.mark.parametrize("threshold", [0, 1 << 40], ids=["reordered", "transposed-view"])
def test_both_filter_layouts_agree_and_the_workspace_formula_follows(threshold, monkeypatch):
    from cnnlab.convlab import workspace

    monkeypatch.setattr(winograd, "REORDER_FILTERS_BYTES", threshold)
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    for tile in (2, 4, 6):
        with workspace.capture() as buffers:
            y = convlab.conv2d_winograd(x, w, padding=1, groups=2, tile=tile)
        torch.testing.assert_close(y, F.conv2d(x, w, padding=1, groups=2), rtol=0, atol=1e-10)
        assert any(name == "filters_reordered" for name, _ in buffers) == (threshold == 0)
        want = convlab.workspace_bytes(f"winograd{tile}", x.shape, w.shape, padding=1, groups=2, dtype=x.dtype)
        assert workspace.peak_bytes(buffers) == want
