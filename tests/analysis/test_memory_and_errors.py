"""Memory figures worked out by hand, unsupported ops, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.analysis import analyze, total_macs
from cnnlab.errors import CnnlabError
from tests.analysis.conftest import tv_model


def _three_convs(inplace_relu: bool = False) -> nn.Module:
    layers = [nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 1, 3, padding=1)]
    if inplace_relu:
        layers.insert(1, nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def test_memory_by_hand():
    rep = analyze(_three_convs(), (1, 8, 8))
    x, o1, o2, o3 = 64 * 4, 2 * 64 * 4, 4 * 64 * 4, 64 * 4
    assert [r.activation_bytes for r in rep.layers()] == [o1, o2, o3]
    assert rep.total_activation_bytes == o1 + o2 + o3  # the input is not written by the model
    # conv2 runs while the input (held by the caller) and conv1's output are alive
    assert rep.peak_activation_bytes == x + o1 + o2
    # autograd keeps each conv's input for the weight gradient; weights are not activations
    assert rep.saved_activation_bytes == x + o1 + o2
    params = 4 * (20 + 76 + 37)
    assert rep.param_bytes == params and rep.buffer_bytes == 0
    assert rep.training_bytes == rep.saved_activation_bytes + 3 * params  # params, grads, momentum
    assert analyze(_three_convs(), (1, 8, 8), optimizer="adam").training_bytes == x + o1 + o2 + 4 * params
    assert analyze(_three_convs(), (1, 8, 8), optimizer="sgd").training_bytes == x + o1 + o2 + 2 * params


def test_in_place_results_are_not_new_memory():
    rep = analyze(_three_convs(inplace_relu=True), (1, 8, 8))
    relu = rep.layers()[1]
    assert relu.kind == "ReLU" and relu.activation_bytes == 2 * 64 * 4
    assert rep.total_activation_bytes == (2 + 4 + 1) * 64 * 4


def test_batch_scales_activations_not_params():
    one, four = analyze(_three_convs(), (1, 8, 8)), analyze(_three_convs(), (1, 8, 8), batch_size=4)
    assert four.total_macs == 4 * one.total_macs
    assert four.peak_activation_bytes == 4 * one.peak_activation_bytes
    assert four.total_params == one.total_params


def test_frozen_parameters_have_no_grads():
    model = _three_convs()
    for p in model[0].parameters():
        p.requires_grad_(False)
    rep = analyze(model, (1, 8, 8), optimizer="sgd")
    assert rep.trainable_params == 76 + 37
    assert rep.grad_bytes == 4 * (76 + 37)


class Sorts(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return torch.sort(self.fc(x), dim=-1).values


def test_unsupported_ops_are_listed_and_warned():
    with pytest.warns(UserWarning, match="aten.sort"):
        rep = analyze(Sorts(), (8,))
    assert rep.unsupported == {"aten.sort": 1}
    assert rep.total_macs == 64
    assert "aten.sort x1" in rep.to_text()


def test_strict_raises():
    with pytest.raises(CnnlabError, match="aten.sort"):
        analyze(Sorts(), (8,), strict=True)
    analyze(_three_convs(), (1, 8, 8), strict=True)  # everything has a formula


def test_too_small_names_the_layer_and_the_smallest_size():
    with pytest.raises(CnnlabError) as e:
        analyze(tv_model("alexnet"), (3, 32, 32))
    msg = str(e.value)
    assert "'features.12' (MaxPool2d)" in msg and "3x63x63" in msg and "\n" not in msg
    analyze(tv_model("alexnet"), (3, 63, 63))  # the size it names works
    with pytest.raises(CnnlabError, match="3x62x62|features"):
        analyze(tv_model("alexnet"), (3, 62, 62))


def test_too_small_for_a_zoo_model():
    with pytest.raises(CnnlabError, match=r"smallest square input that works is 3x32x32"):
        analyze("resnet18", (3, 8, 8))


@pytest.mark.parametrize("bad", [(0, 224, 224), "abc", (3, -1, 4)])
def test_bad_input_size(bad):
    with pytest.raises(CnnlabError, match="input_size"):
        analyze(_three_convs(), bad)


def test_bad_arguments():
    with pytest.raises(CnnlabError, match="batch_size"):
        analyze(_three_convs(), (1, 8, 8), batch_size=0)
    with pytest.raises(CnnlabError, match="optimizer"):
        analyze(_three_convs(), (1, 8, 8), optimizer="adamm")
    with pytest.raises(CnnlabError, match="nn.Module"):
        analyze(42)
    with pytest.raises(CnnlabError, match="did you mean"):
        analyze("resnet5O")


def test_total_macs_for_the_models_table():
    assert (
        total_macs("lenet5")
        == analyze("lenet5").total_macs
        == 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + (400 * 120 + 120 * 84 + 84 * 10)
    )


def test_device_less_factories_inside_forward():
    class MakesTensors(nn.Module):
        def forward(self, x):
            return x + torch.ones(x.shape[-1])  # no device: CPU by default, meta under the analysis

    rep = analyze(MakesTensors(), (3, 4, 4))
    assert rep.flops == 3 * 4 * 4 and not rep.unsupported


class _ExactSize(nn.Module):
    """A Linear after a conv: runs at exactly 32x32."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 5)
        self.fc = nn.Linear(2 * 28 * 28, 3)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


@pytest.mark.parametrize("size", [10, 40])
def test_a_net_that_needs_one_size(size):
    with pytest.raises(CnnlabError, match=r"layer 'fc' \(Linear\).*1x32x32$"):
        analyze(_ExactSize(), (1, size, size))
