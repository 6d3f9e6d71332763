"""Parameter groups by anatomy, and the schedules against torch's own schedulers (the slow oracles)."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.errors import UnknownNameError
from cnnlab.registry import create_model
from cnnlab.train.optim import EMA, LRSchedule, build_optimizer, param_groups
from cnnlab.train.recipe import load_recipe


def _net():
    return create_model("resnet20", num_classes=10)


def test_groups_follow_the_anatomy_and_exempt_norms_and_biases():
    model = _net()
    recipe = load_recipe(None, weight_decay=1e-4)
    groups = {g["name"]: g for g in param_groups(model, recipe)}
    assert {"stem", "stem.no_decay", "stages", "stages.no_decay", "head", "head.no_decay"} <= set(groups)
    for g in groups.values():
        assert g["weight_decay"] == (0.0 if g["name"].endswith("no_decay") else 1e-4)
        assert all((p.ndim <= 1) == g["name"].endswith("no_decay") for p in g["params"])
    n = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())
    everything = param_groups(model, load_recipe(None, decay_norm_and_bias=True))
    assert all(g["weight_decay"] == 5e-4 for g in everything)


def test_lr_multipliers_per_part_and_unknown_part():
    model = _net()
    recipe = load_recipe(None, lr=0.1, schedule="constant")
    opt = build_optimizer(model, recipe, {"stem": 0.01, "stages": 0.1})
    LRSchedule(recipe, 10, 100).apply(opt, 0)
    lrs = {g["part"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"stem": 0.001, "stages": 0.01, "head": 0.1})
    with pytest.raises(UnknownNameError, match="did you mean head"):
        param_groups(model, recipe, {"haed": 1.0})


def test_frozen_parameters_are_left_out():
    model = _net()
    for p in model.stem.parameters():
        p.requires_grad_(False)
    names = {g["part"] for g in param_groups(model, load_recipe(None))}
    assert "stem" not in names


def _oracle(scheduler_cls, steps: int, **kw) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = scheduler_cls(opt, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _ours(recipe, steps_per_epoch: int, total: int) -> list[float]:
    s = LRSchedule(recipe, steps_per_epoch, total)
    return [recipe.lr * s.factor(i) for i in range(total)]


def test_step_schedule_in_iterations_matches_multisteplr():
    r = load_recipe(None, lr=0.1, schedule="step", milestones=[32, 48], milestone_unit="iteration")
    ours = _ours(r, 10, 64)
    ref = _oracle(torch.optim.lr_scheduler.MultiStepLR, 64, milestones=[32, 48], gamma=0.1)
    assert ours == pytest.approx(ref, rel=1e-12)
    assert ours[31] == 0.1 and ours[32] == pytest.approx(0.01) and ours[48] == pytest.approx(0.001)


def test_step_schedule_in_epochs():
    r = load_recipe(None, lr=0.1, schedule="step", milestones=[2, 3])
    ours = _ours(r, 5, 20)
    assert ours[9] == 0.1 and ours[10] == pytest.approx(0.01) and ours[15] == pytest.approx(0.001)


def test_cosine_matches_cosineannealinglr():
    r = load_recipe(None, lr=0.1, schedule="cosine", min_lr_ratio=0.01)
    ref = _oracle(torch.optim.lr_scheduler.CosineAnnealingLR, 50, T_max=50, eta_min=0.001)
    assert _ours(r, 10, 50) == pytest.approx(ref, rel=1e-9)


def test_warmup_is_linear():
    r = load_recipe(None, lr=0.1, schedule="cosine", warmup_epochs=1, warmup_start=0.1)
    ours = _ours(r, 10, 50)
    assert ours[0] == pytest.approx(0.01) and ours[5] == pytest.approx(0.055) and ours[10] == pytest.approx(0.1)


def test_onecycle_matches_onecyclelr():
    r = load_recipe(None, lr=0.1, schedule="onecycle", onecycle_pct=0.3, onecycle_div=25, onecycle_final_div=1e4)
    ref = _oracle(
        torch.optim.lr_scheduler.OneCycleLR, 100, max_lr=0.1, total_steps=100, pct_start=0.3,
        div_factor=25, final_div_factor=1e4, cycle_momentum=False, anneal_strategy="cos",
    )  # fmt: skip
    assert _ours(r, 10, 100) == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_plateau_divides_after_patience_and_round_trips():
    r = load_recipe(None, lr=0.01, schedule="plateau", plateau_patience=2)
    s = LRSchedule(r, 10, 1000)
    accs = [0.5, 0.6, 0.6, 0.6, 0.6, 0.7]
    drops = [s.epoch_end(a) for a in accs]
    assert drops == [False, False, False, False, True, False]
    assert s.factor(999) == pytest.approx(0.1)
    t = LRSchedule(r, 10, 1000)
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()


def test_ema_is_the_moving_average():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, 0.9)
    w0 = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.state_dict()["weight"], 0.9 * w0 + 0.1 * (w0 + 1))
    assert math.isclose(ema.decay, 0.9)
