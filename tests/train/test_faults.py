"""Faults: corrupt checkpoints fall back, non-finite losses are skipped or stop the run, nothing non-finite
is ever written, bf16 is refused without hardware support."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model
from cnnlab.train import numerics
from cnnlab.train.checkpoint import CheckpointDir, NonFiniteWeightsError, load_weights, save_weights
from cnnlab.train.loop import NonFiniteLossError, train
from cnnlab.train.recipe import load_recipe
from tests.train.conftest import TINY


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path):
    recipe = load_recipe(None, **{**TINY, "epochs": 1, "keep_last": 3})
    run = tmp_path / "run"
    train(recipe, out=run, log=_quiet)
    ckpts = CheckpointDir(run / "checkpoints", log=_quiet)
    steps = sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.json"))
    assert len(steps) == 3
    newest = ckpts.latest()
    assert newest.step == steps[-1]
    # Truncate the newest weights file, flip one byte of the next one's state: both must be rejected.
    data = newest.weights.read_bytes()
    newest.weights.write_bytes(data[: len(data) // 2])
    second = run / "checkpoints" / f"step-{steps[-2]:08d}.state.pt"
    raw = bytearray(second.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    second.write_bytes(bytes(raw))
    messages: list[str] = []
    fallback = CheckpointDir(run / "checkpoints", log=messages.append).latest()
    assert fallback is not None and fallback.step == steps[-3]
    assert any("corrupt or truncated" in m for m in messages) and len(messages) == 2
    # A resume starts from the good one and finishes with the same weights as the uninterrupted run.
    result = train(recipe, resume=run, log=messages.append)
    assert result.status == "finished"
    assert any(f"step {steps[-3]}" in m for m in messages if m.startswith("resumed"))


def test_resume_after_corruption_is_still_exact(tmp_path):
    recipe = load_recipe(None, **{**TINY, "epochs": 1, "keep_last": 2})
    ref_run, run = tmp_path / "ref", tmp_path / "run"
    train(recipe, out=ref_run, log=_quiet)
    train(recipe, out=run, log=_quiet)
    newest = CheckpointDir(run / "checkpoints", log=_quiet).latest()
    newest.state.write_bytes(b"\0" * 10)  # a torn write
    train(recipe, resume=run, log=_quiet)
    a = load_weights(CheckpointDir(ref_run / "checkpoints").latest().weights)[0]
    b = load_weights(CheckpointDir(run / "checkpoints").latest().weights)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_uncommitted_checkpoint_is_ignored(tmp_path):
    ckpts = CheckpointDir(tmp_path, log=_quiet)
    w = {"w": torch.ones(3)}
    ckpts.save(1, 0, w, {"x": 1}, {"model": "m"})
    # A kill after the data files but before the manifest: files exist, no step-2 manifest.
    (tmp_path / "step-00000002.safetensors").write_bytes(b"partial")
    assert ckpts.latest().step == 1
    ckpts.save(3, 0, w, {"x": 3}, {"model": "m"})
    assert not (tmp_path / "step-00000002.safetensors").exists()  # the orphan is cleaned up
    st = ckpts.latest().load_state()  # weights_only=True inside
    assert st == {"x": 3}


def test_non_finite_weights_are_never_written(tmp_path):
    with pytest.raises(NonFiniteWeightsError, match="non-finite"):
        save_weights(tmp_path / "w.safetensors", {"a": torch.tensor([1.0, math.nan])})
    assert not (tmp_path / "w.safetensors").exists()


class _NaNOn(nn.Module):
    """lenet5 whose output is NaN on the given forward calls (a stand-in for an fp16 overflow)."""

    def __init__(self, bad_calls: set[int], in_chans: int = 3):
        super().__init__()
        self.net = create_model("lenet5", num_classes=4, in_chans=in_chans)
        self.model_name = "lenet5"
        self.min_input_size = self.net.min_input_size
        self.bad, self.calls = bad_calls, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls in self.bad:
                out = out * math.nan
        return out


def test_isolated_non_finite_losses_skip_the_step(tmp_path):
    recipe = load_recipe(None, **{**TINY, "epochs": 1, "max_nonfinite": 3})
    model = _NaNOn({2, 3, 5})
    messages: list[str] = []
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(recipe, out=tmp_path / "run", model=model, log=messages.append)
    assert result.status == "finished"
    assert sum("non-finite loss" in m for m in messages) == 3
    w = load_weights(CheckpointDir(tmp_path / "run" / "checkpoints").latest().weights)[0]
    assert all(torch.isfinite(v).all() for v in w.values())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # it did train


def test_non_finite_losses_in_a_row_stop_the_run_with_a_clear_message(tmp_path):
    recipe = load_recipe(None, **{**TINY, "epochs": 1, "max_nonfinite": 3, "checkpoint_every": 2})
    model = _NaNOn(set(range(4, 100)))
    with pytest.raises(NonFiniteLossError, match="non-finite for 3 steps in a row"):
        train(recipe, out=tmp_path / "run", model=model, log=_quiet)
    last = CheckpointDir(tmp_path / "run" / "checkpoints").latest()
    assert last is not None and last.step <= 4  # the checkpoint before the NaNs; none written after
    assert all(torch.isfinite(v).all() for v in load_weights(last.weights)[0].values())


def test_diverging_lr_stops_without_writing_non_finite_weights(tmp_path):
    recipe = load_recipe(None, **{**TINY, "epochs": 2, "lr": 1e30, "max_nonfinite": 2, "schedule": "constant"})
    with pytest.raises(NonFiniteLossError):
        train(recipe, out=tmp_path / "run", log=_quiet)
    for f in (tmp_path / "run" / "checkpoints").glob("*.safetensors"):
        assert all(torch.isfinite(v).all() for v in load_weights(f)[0].values())


def test_fp16_autocast_with_grad_scaler_trains(tmp_path):
    recipe = load_recipe(None, **{**TINY, "epochs": 1, "precision": "fp16"})
    result = train(recipe, out=tmp_path / "run", log=_quiet)
    assert result.status == "finished"
    state = CheckpointDir(tmp_path / "run" / "checkpoints").latest().load_state()
    assert state["scaler"]["scale"] > 0  # the scaler's state travels with the checkpoint


def test_bf16_refused_without_native_support(monkeypatch, tmp_path):
    monkeypatch.setattr(numerics, "cpu_has_native_bf16", lambda: False)
    recipe = load_recipe(None, **{**TINY, "precision": "bf16"})
    with pytest.raises(CnnlabError, match="no native bf16"):
        train(recipe, out=tmp_path / "run", device="cpu", log=_quiet)


def test_fine_tuning_hooks_groups_and_train_mode(tmp_path):
    """The hooks issue 6 builds on: custom parameter groups and a train-mode function (frozen BN stays eval)."""
    recipe = load_recipe(None, **{**TINY, "epochs": 1})
    model = create_model("lenet5", num_classes=4, in_chans=3)
    for p in model.stages.parameters():
        p.requires_grad_(False)
    frozen = {k: v.clone() for k, v in model.stages.state_dict().items()}
    calls: list[bool] = []

    def groups(m: nn.Module) -> list[dict]:
        return [{"params": [p for p in m.head.parameters()], "lr_mult": 0.5, "name": "head"}]

    def mode(m: nn.Module) -> None:
        m.train()
        m.stages.eval()
        calls.append(True)

    result = train(recipe, out=tmp_path / "run", model=model, log=_quiet, param_groups=groups, train_mode=mode)
    assert result.status == "finished" and len(calls) >= 2  # at the start and after each validation
    assert all(torch.equal(frozen[k], v) for k, v in model.stages.state_dict().items())
    state = CheckpointDir(tmp_path / "run" / "checkpoints").latest().load_state()
    assert [g["lr_mult"] for g in state["optimizer"]["param_groups"]] == [0.5]
