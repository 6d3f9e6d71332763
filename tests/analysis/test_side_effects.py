"""Nothing the analysis touches changes: the model (device, mode, state_dict bit for bit, BN statistics, hooks,
requires_grad), the caller's inputs, and torch's global state."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis import analyze
from cnnlab.analysis.counter import meta_twin


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 4)
        self.register_buffer("scale", torch.tensor(2.0))
        self.calls = []

    def forward(self, x):
        self.calls.append(1)  # a forward with a Python side effect of its own
        y = self.drop(F.relu(self.bn(self.conv(x))))
        return self.fc(y.mean((2, 3))) * self.scale


def _snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _global_state() -> tuple:
    from torch.nn.modules import module as m

    return (
        F.conv2d,
        F.linear,
        torch.matmul,
        torch.Tensor.__matmul__,
        nn.Conv2d.forward,
        dict(m._global_forward_hooks),
        dict(m._global_forward_pre_hooks),
        torch.is_grad_enabled(),
        torch.get_default_device(),
        torch.get_default_dtype(),
        torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FUNCTIONAL),
        len(torch.utils._python_dispatch._get_current_dispatch_mode_stack()),
    )


def test_model_is_unchanged_in_train_mode():
    model = Net().train()
    model.bn.running_mean.normal_()
    before = _snapshot(model)
    seen = []
    handle = model.conv.register_forward_hook(lambda m, i, o: seen.append(o.device.type))
    g0 = _global_state()
    rep = analyze(model, (3, 12, 12), batch_size=2)
    assert rep.total_macs > 0
    assert model.training and all(m.training for m in model.modules())
    after = _snapshot(model)
    assert before.keys() == after.keys()
    for k in before:  # bit-identical, BN statistics and num_batches_tracked included
        assert torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype, k
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert model.calls == []  # the twin's forward appended to the twin's own list
    assert seen == ["meta"]  # the user's hook ran on the twin (it is part of the model), on meta tensors
    assert list(model.conv._forward_hooks) == [handle.id]  # and the analysis left no hook behind
    assert not model._forward_pre_hooks and not model.fc._forward_hooks
    assert _global_state() == g0


def test_eval_mode_and_requires_grad_are_kept():
    model = Net().eval()
    model.conv.weight.requires_grad_(False)
    analyze(model, (3, 12, 12), train=True)
    assert not model.training and not model.conv.weight.requires_grad


def test_the_caller_inputs_are_not_moved():
    x = torch.randn(2, 3, 12, 12)
    analyze(Net(), inputs=x)
    assert x.device.type == "cpu" and not hasattr(x, "_cnnlab_rf")


def test_twin_shares_structure_not_weights():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model.add_module("again", model[0])  # shared module
    twin = meta_twin(model)
    assert twin[0] is twin.again and twin[0] is not model[0]
    assert twin[0].weight.is_meta and model[0].weight.device.type == "cpu"
    deep = meta_twin(model, deep=True)
    assert deep[0] is deep.again and deep[0].weight.is_meta


def test_shallow_and_deep_twins_give_the_same_report():
    from tests.analysis.conftest import tv_model

    model = tv_model("resnet18")
    import cnnlab.analysis.api as api

    shallow = analyze(model)
    orig = api.meta_twin
    api.meta_twin = lambda m, training=None: orig(m, deep=True, training=training)
    try:
        deep = analyze(model)
    finally:
        api.meta_twin = orig
    assert shallow.to_dict() == deep.to_dict()
