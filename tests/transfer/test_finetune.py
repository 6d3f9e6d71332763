"""Freezing, discriminative learning rates and pretrained sources, on the common anatomy."""

from __future__ import annotations

import urllib.error

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.registry import get_entry
from cnnlab.train.finetune import (
    apply_freeze,
    param_groups,
    parse_lr_mult,
    part_of,
    plan_freeze,
    set_train_mode,
)
from cnnlab.train.pretrained import load_pretrained, read_source
from cnnlab.weights import save_state_dict, torchvision_state_dict


def bn_model():
    """A registered model with BatchNorm in its stages, whichever is available (lenet5 has none)."""
    for name in ("resnet20", "resnet18", "vgg11_bn"):
        if name in cnnlab.list_models():
            return cnnlab.create_model(name, num_classes=5)
    pytest.skip("no BN model registered yet")


def test_part_of():
    assert part_of("stem.conv.weight") == "stem"
    assert part_of("stages.3.1.conv1.weight") == "stages.3"
    assert part_of("head.fc.bias") == "head"
    assert part_of("aux1.fc.weight") == "head"


def test_freeze_plans():
    model = cnnlab.create_model("lenet5")
    assert plan_freeze(model, "none").frozen == []
    assert plan_freeze(model, "backbone").frozen == ["stem", "stages.0", "stages.1"]
    assert plan_freeze(model, "stages:1").frozen == ["stem", "stages.0"]
    with pytest.raises(CnnlabError, match="only 2 stages"):
        plan_freeze(model, "stages:3")
    with pytest.raises(CnnlabError, match="none, backbone or stages:K"):
        plan_freeze(model, "stages")


def test_frozen_parts_get_no_gradient_and_keep_bn_statistics():
    model = bn_model()
    plan = plan_freeze(model, "backbone")
    apply_freeze(model, plan)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_train_mode(model, plan)
    assert model.training and model.head.training
    assert not any(m.training for stage in model.stages for m in stage.modules())
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    out = out.logits if hasattr(out, "logits") else out
    out.sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is None) == (part_of(name) != "head"), name
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [], changed  # a forward in train mode did not move frozen BN statistics


def test_param_groups_follow_lr_mult():
    model = cnnlab.create_model("lenet5")
    mult = parse_lr_mult("head=1,stages=0.1,stem=0.01,stage1=0.5", model)
    groups = param_groups(model, lr=0.1, weight_decay=5e-4, lr_mult=mult)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["stages.0.0.weight"]["lr"] == pytest.approx(0.01)
    assert by_name["stages.1.0.weight"]["lr"] == pytest.approx(0.05)
    assert by_name["head.fc.weight"]["lr"] == pytest.approx(0.1)
    assert by_name["head.fc.weight"]["weight_decay"] == 5e-4
    assert by_name["head.fc.bias"]["weight_decay"] == 0.0  # no decay on biases and norms by default
    assert sorted(by_name) == sorted(n for n, _ in model.named_parameters())


def test_frozen_parameters_are_left_out_of_groups():
    model = cnnlab.create_model("lenet5")
    apply_freeze(model, plan_freeze(model, "backbone"))
    names = {n for g in param_groups(model, 0.1, 0.0) for n in g["names"]}
    assert names == {n for n, _ in model.named_parameters() if n.startswith("head.")}


def test_unknown_lr_mult_group_suggests():
    model = cnnlab.create_model("lenet5")
    with pytest.raises(UnknownNameError, match="did you mean stages"):
        parse_lr_mult("stagse=0.1", model)
    with pytest.raises(CnnlabError, match="not a number"):
        parse_lr_mult("head=x", model)


def test_load_pretrained_replaces_head_and_keeps_backbone(tmp_path):
    src = cnnlab.create_model("lenet5", num_classes=10)
    path = tmp_path / "w.safetensors"
    save_state_dict(src.state_dict(), path)
    target = cnnlab.create_model("lenet5", num_classes=3)
    notes = load_pretrained(target, get_entry("lenet5").family, read_source(str(path)), str(path))
    assert any("head replaced: 10 -> 3" in n for n in notes)
    assert target.num_classes == 3
    for k, v in src.state_dict().items():
        if not k.startswith("head.fc."):
            assert torch.equal(v, target.state_dict()[k]), k


def test_run_directory_source(tmp_path):
    src = cnnlab.create_model("lenet5")
    save_state_dict(src.state_dict(), tmp_path / "best.safetensors")
    assert torch.equal(read_source(str(tmp_path))["head.fc.weight"], src.head.fc.weight)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CnnlabError, match="no weights"):
        read_source(str(empty))


def test_torchvision_unknown_name():
    pytest.importorskip("torchvision")
    with pytest.raises(UnknownNameError, match="resnet18"):
        torchvision_state_dict("resnet19")


def test_torchvision_offline_says_how_to_pass_a_file(monkeypatch):
    tvm = pytest.importorskip("torchvision.models")

    def offline(self, *a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(CnnlabError) as e:
        torchvision_state_dict("resnet18")
    msg = str(e.value)
    assert "--weights resnet18.pth" in msg and "\n" not in msg
