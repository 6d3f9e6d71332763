"""TensorBoard event files (`--tensorboard`): read back with TensorBoard's own EventAccumulator, the values are
metrics.csv's, the images are there, a resume does not log a step twice, and it is off by default."""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli import build_parser, main
from cnnlab.cli.train import new_recipe
from cnnlab.errors import CnnlabError
from cnnlab.train.data_adapter import open_data
from cnnlab.train.loop import train
from cnnlab.train.recipe import Recipe, load_recipe
from tests.train.conftest import TINY

STEPS_PER_EPOCH = 8  # TINY: 259 training images (288 less the val carve) in batches of 32
MESSAGE = "tensorboard=true needs the tensorboard package: pip install 'cnnlab[tensorboard]'"


def _quiet(_: str) -> None:
    pass


def _events(path: Path):  # noqa: ANN202
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0})  # 0: keep every event
    acc.Reload()
    return acc


def _steps(acc, tag: str) -> list[int]:  # noqa: ANN001
    return [e.step for e in acc.Scalars(tag)]


def _metrics(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    pytest.importorskip("tensorboard")
    from cnnlab.train import evaluate

    torch.set_num_threads(1)
    recipe = load_recipe(None, **{**TINY, "epochs": 2, "checkpoint_every": 0, "tensorboard": True})
    run = tmp_path_factory.mktemp("tb") / "run"
    drawn: list[dict] = []  # the reports plot_confusion drew (the real figure is still drawn and logged)

    def plot_confusion(report, path, title=""):  # noqa: ANN001, ANN202
        drawn.append(report)
        return real(report, path, title)

    real = evaluate.plot_confusion
    with pytest.MonkeyPatch.context() as m:
        m.setattr(evaluate, "plot_confusion", plot_confusion)
        result = train(recipe, out=run, log=_quiet)
    assert result.status == "finished"
    return recipe, run, result, _events(run / "tensorboard"), drawn


def test_step_scalars_every_optimizer_step_and_consistent_with_the_epoch_rows(two_epochs):
    _, run, _, acc, _ = two_epochs
    total = 2 * STEPS_PER_EPOCH
    assert _steps(acc, "train/loss") == list(range(1, total + 1))
    assert _steps(acc, "train/lr") == list(range(1, total + 1))
    rows = _metrics(run)
    losses = [e.value for e in acc.Scalars("train/loss")]
    lrs = [e.value for e in acc.Scalars("train/lr")]
    for k, row in enumerate(rows):
        epoch = slice(k * STEPS_PER_EPOCH, (k + 1) * STEPS_PER_EPOCH)
        # Equal batches (drop_last): the epoch's train loss is the mean of its steps' losses.
        assert sum(losses[epoch]) / STEPS_PER_EPOCH == pytest.approx(float(row["train_loss"]), rel=1e-5)
        assert lrs[epoch][-1] == pytest.approx(float(row["lr"]), rel=1e-6)  # the row's lr: its last step's
    assert lrs[0] > lrs[-1]  # cosine: the per-step curve is the schedule, not one value repeated


def test_epoch_scalars_equal_metrics_csv(two_epochs):
    _, run, _, acc, _ = two_epochs
    rows = _metrics(run)
    assert len(rows) == 2
    for column in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "img_per_s", "seconds"):
        events = acc.Scalars(f"epoch/{column}")
        assert [e.step for e in events] == [int(r["step"]) for r in rows], column
        assert [e.value for e in events] == pytest.approx([float(r[column]) for r in rows], rel=1e-6), column
    # metrics.csv's empty columns (no clean_train_*, no emulation) are not curves
    assert not [t for t in acc.Tags()["scalars"] if t.startswith("epoch/clean_train")]


def test_batch_grid_is_the_first_training_batch_denormalized(two_epochs):
    recipe, _, _, acc, _ = two_epochs
    (event,) = acc.Images("train/batch")
    assert event.step == 0
    data = open_data(recipe)
    x, _ = next(iter(data.train.iter_from(0)))  # epoch 0, batch 0: what the first step trained on
    n, _, h, w = x.shape
    assert (event.width, event.height) == (8 * w, -(-n // 8) * h)  # 8 images a row
    from PIL import Image

    grid = torch.from_numpy(np.array(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB")))
    assert grid.shape == (event.height, event.width, 3)
    mean, std = torch.tensor(data.mean).view(-1, 1, 1), torch.tensor(data.std).view(-1, 1, 1)
    first = ((x[0] * std + mean).clamp(0, 1) * 255).permute(1, 2, 0)  # (H, W, C) in 0..255
    assert (grid[:h, :w].float() - first).abs().max() <= 1.0  # uint8 rounding only


def test_confusion_matrix_image_at_the_last_step_is_the_runs_test_figure(two_epochs):
    _, _, result, acc, drawn = two_epochs
    (event,) = acc.Images("test/confusion")
    assert event.step == result.summary["steps"] == 2 * STEPS_PER_EPOCH
    assert event.width > 300 and event.height > 300  # plot_confusion's figure: 5.5 x 3.5 inches at least, 110 dpi
    (report,) = drawn
    # The matrix is of the weights the run tested: its top-1 and image count are summary.json's.
    assert report["top1"] == pytest.approx(result.summary["test_top1"], abs=1e-9)
    assert sum(map(sum, report["confusion"])) == result.summary["test_images"] == 64
    assert report["members"] == [{"model": "lenet5"}] and report["split"] == "test"


class _Custom(torch.nn.Module):
    """A network the registry cannot rebuild from a checkpoint (its keys are `net.*`): train(model=...)."""

    def __init__(self) -> None:
        super().__init__()
        from cnnlab import create_model

        self.net = create_model("lenet5", num_classes=4, in_chans=3)
        self.model_name, self.min_input_size = "custom-lenet", self.net.min_input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_confusion_matrix_of_a_custom_network(tmp_path):
    pytest.importorskip("tensorboard")
    torch.set_num_threads(1)
    recipe = load_recipe(None, **{**TINY, "epochs": 1, "checkpoint_every": 0, "tensorboard": True})
    result = train(recipe, out=tmp_path / "run", model=_Custom(), log=_quiet)
    assert result.status == "finished"
    (event,) = _events(tmp_path / "run" / "tensorboard").Images("test/confusion")
    assert event.step == STEPS_PER_EPOCH


@pytest.fixture(scope="module")
def off_run(tmp_path_factory):
    """two_epochs's run with tensorboard off (the default): needs no tensorboard package."""
    torch.set_num_threads(1)
    recipe = load_recipe(None, **{**TINY, "epochs": 2, "checkpoint_every": 0})
    run = tmp_path_factory.mktemp("off") / "run"
    assert train(recipe, out=run, log=_quiet).status == "finished"
    return recipe, run


def test_off_by_default_writes_no_event_files(off_run):
    recipe, run = off_run
    assert Recipe().tensorboard is False and recipe.tensorboard is False
    assert (run / "metrics.csv").is_file()
    assert not (run / "tensorboard").exists()
    assert not list(run.rglob("events.out.tfevents.*"))


def test_on_changes_no_number_of_the_run(off_run, two_epochs):
    (off_recipe, off), (on_recipe, on, *_) = off_run, two_epochs
    assert off_recipe == on_recipe.replace(tensorboard=False)
    # Drawing the batch grid and buffering the losses leave the run alone (the same data order and RNG draws).
    for a, b in zip(_metrics(off), _metrics(on), strict=True):
        for column in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert a[column] == b[column], column
    assert _json(off)["test_top1"] == _json(on)["test_top1"]


def _json(run: Path) -> dict:
    import json

    return json.loads((run / "summary.json").read_text())


class _Crash(Exception):
    pass


def test_resume_after_a_crash_does_not_log_a_step_twice(tmp_path):
    pytest.importorskip("tensorboard")
    torch.set_num_threads(1)
    # Checkpoints at steps 3, 6, ..., 15 and at each epoch end (8, 16, 24).
    recipe = load_recipe(None, **{**TINY, "tensorboard": True})
    run = tmp_path / "run"

    def crash_at_epoch_2(line: str) -> None:
        # The epoch-2 line comes after its events (steps 9-16, epoch/* at 16) and before its checkpoint: the run
        # dies with events past its newest checkpoint (step 15), as a killed run does.
        if line.startswith("epoch 2/"):
            raise _Crash

    with pytest.raises(_Crash):
        train(recipe, out=run, log=crash_at_epoch_2)
    (first,) = (run / "tensorboard").iterdir()
    assert 16 in _steps(_events(first), "train/loss")  # the events the resume must hide
    assert train(recipe, resume=run, log=_quiet).status == "finished"
    assert len(list((run / "tensorboard").iterdir())) == 2  # appended: a second event file in the same directory
    acc = _events(run / "tensorboard")
    assert _steps(acc, "train/loss") == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    rows = _metrics(run)
    events = acc.Scalars("epoch/train_loss")
    assert [e.step for e in events] == [int(r["step"]) for r in rows] == [8, 16, 24]
    assert [e.value for e in events] == pytest.approx([float(r["train_loss"]) for r in rows], rel=1e-6)
    assert len(acc.Images("train/batch")) == 1  # a resumed run does not log the grid again
    assert [e.step for e in acc.Images("test/confusion")] == [24]
    # Resuming the finished run trains nothing and tests again: no step, and no image, is logged twice.
    assert train(recipe, resume=run, log=_quiet).status == "finished"
    acc = _events(run / "tensorboard")
    assert _steps(acc, "train/loss") == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert _steps(acc, "epoch/val_acc") == [8, 16, 24]
    assert [e.step for e in acc.Images("test/confusion")] == [24]


def test_resume_after_sigterm_keeps_the_stopped_epochs_steps(tmp_path):
    pytest.importorskip("tensorboard")
    torch.set_num_threads(1)
    recipe = load_recipe(None, **{**TINY, "epochs": 2, "checkpoint_every": 0, "tensorboard": True})
    run = tmp_path / "run"

    def sigterm_after_epoch_1(line: str) -> None:
        if line.startswith("epoch 1/"):
            os.kill(os.getpid(), signal.SIGTERM)  # the loop stops gracefully after the next step (step 9)

    result = train(recipe, out=run, log=sigterm_after_epoch_1)
    assert result.status == "interrupted"
    assert _steps(_events(run / "tensorboard"), "train/loss") == list(range(1, STEPS_PER_EPOCH + 2))
    assert train(recipe, resume=run, log=_quiet).status == "finished"
    assert _steps(_events(run / "tensorboard"), "train/loss") == list(range(1, 2 * STEPS_PER_EPOCH + 1))


# -- the switch ----------------------------------------------------------------------------------------------


def _cli_recipe(*argv: str) -> Recipe:
    return new_recipe(build_parser().parse_args(["train", "lenet5", "--data", "shapes", *argv]), log=_quiet)


def test_flag_and_set_override_turn_it_on():
    assert _cli_recipe().tensorboard is False
    assert _cli_recipe("--tensorboard").tensorboard is True
    assert _cli_recipe("--set", "tensorboard=true").tensorboard is True
    with pytest.raises(CnnlabError, match="tensorboard must be bool"):
        _cli_recipe("--set", "tensorboard=yes")
    assert "tensorboard = true" in _cli_recipe("--tensorboard").to_toml()  # recorded in recipe.toml


@pytest.mark.parametrize(
    "switch",
    [["--tensorboard"], ["--set", "tensorboard=true"], ["--tensorboard", "--nproc", "2"], ["--recipe", "FILE"]],
    ids=["flag", "set", "nproc", "recipe-file"],
)
def test_without_the_package_one_line_and_exit_2_before_training(monkeypatch, capsys, tmp_path, switch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    if switch == ["--recipe", "FILE"]:
        (tmp_path / "tb.toml").write_text("tensorboard = true\n")
        switch = ["--recipe", str(tmp_path / "tb.toml")]
    out = tmp_path / "run"
    argv = ["train", "lenet5", "--data", TINY["data"], "--epochs", "1", "--no-progress", "--out", str(out)]
    assert main(argv + switch) == 2
    captured = capsys.readouterr()
    assert captured.err == f"cnnlab train: error: {MESSAGE}\n"
    assert captured.out == ""  # not even the family-defaults note: the refusal is the one line
    assert not out.exists()  # nothing was made: the check comes before the run directory is claimed (or torchrun)


def test_without_the_package_train_refuses_before_claiming_the_run_directory(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    recipe = load_recipe(None, **{**TINY, "tensorboard": True})  # the library entry point: no CLI check before it
    with pytest.raises(CnnlabError, match=r"^tensorboard=true needs the tensorboard package: pip install"):
        train(recipe, out=tmp_path / "run", log=_quiet)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # two torch processes under torchrun: 25-75 s on a busy 2-core machine
def test_two_processes_rank_0_writes_the_global_batch_losses(tmp_path):
    pytest.importorskip("tensorboard")
    import subprocess

    from cnnlab.train.rundir import read_run

    recipe = load_recipe(None, **{**TINY, "epochs": 2})
    open_data(recipe)  # build the cache once, before two processes want it
    ddp = tmp_path / "ddp"
    sets = [f"--set={k}={v}" for k, v in (("threads", 1), ("checkpoint_every", 0), ("eval_batch_size", 64))]
    cmd = [sys.executable, "-m", "cnnlab", "train", "lenet5", "--data", TINY["data"], "--epochs", "2",
           "--batch-size", "32", "--nproc", "2", "--tensorboard", "--no-progress", "--out", str(ddp),
           *sets]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((ddp / "tensorboard").iterdir())) == 1  # rank 0's file only
    torch.set_num_threads(1)
    single = tmp_path / "single"
    train(read_run(ddp)[0], out=single, log=_quiet)  # the same recipe in one process: the oracle
    a, b = _events(ddp / "tensorboard"), _events(single / "tensorboard")
    assert _steps(a, "train/loss") == _steps(b, "train/loss") == list(range(1, 2 * STEPS_PER_EPOCH + 1))

    # The mean of the two ranks' half-batch losses is the global batch's loss (not rank 0's half alone).
    def values(acc, tag: str) -> list[float]:  # noqa: ANN001
        return [e.value for e in acc.Scalars(tag)]

    assert values(a, "train/loss") == pytest.approx(values(b, "train/loss"), abs=1e-5)
    assert values(a, "epoch/val_acc") == pytest.approx(values(b, "epoch/val_acc"))
