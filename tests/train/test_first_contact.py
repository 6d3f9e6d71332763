"""What a new user hit in the first hour (issue 11), each a regression test: run directories that hold another
run or are in use, a full disk, lengths given on the command line, signals, bad flags, small inputs, the
ImageNet layout, paths recorded as typed."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import build_parser, main
from cnnlab.cli.train import new_recipe
from cnnlab.train import checkpoint as checkpoint_mod
from cnnlab.train.checkpoint import CheckpointDir, load_weights
from cnnlab.train.recipe import FAMILY_DIR, from_dict, load_recipe
from cnnlab.train.rundir import RunLock
from tests.train.conftest import TINY

SETS = [a for k in ("batch_size", "lr", "threads", "eval_batch_size", "checkpoint_every") for a in
        ("--set", f"{k}={TINY[k]}")]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _train_argv(run: Path, *extra: str, epochs: int = 1) -> list[str]:
    return ["train", TINY["model"], "--data", TINY["data"], "--epochs", str(epochs), "--out", str(run),
            "--no-progress", "--set", "schedule=cosine", *SETS, *extra]  # fmt: skip


def _one_line_exit_2(capsys, argv: list[str], needle: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err, err
    assert "Traceback" not in err
    return err


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# -- the run directory ---------------------------------------------------------------------------------------


def test_out_holding_a_finished_run_is_refused_and_left_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(run)) == 0
    before = _snapshot(run)
    capsys.readouterr()
    _one_line_exit_2(capsys, _train_argv(run, "--seed", "5"), "already holds a run")
    assert _snapshot(run) == before
    # --resume of the finished run is still allowed (and has nothing left to do).
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0


def test_a_run_directory_in_use_is_refused(tmp_path, capsys):
    busy, done = tmp_path / "busy", tmp_path / "done"
    assert main(_train_argv(done)) == 0
    capsys.readouterr()
    with RunLock(busy), RunLock(done):  # another process training there (flock conflicts even in-process)
        err = _one_line_exit_2(capsys, _train_argv(busy), "in use by another cnnlab train")
        assert f"pid {os.getpid()}" in err
        _one_line_exit_2(capsys, ["train", "--resume", str(done)], "in use")
    assert not (busy / "run.json").exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    _one_line_exit_2(capsys, _train_argv(f), "is a file")
    assert f.read_text() == "keep me"


def test_run_files_follow_the_umask(tmp_path):
    run = tmp_path / "run"
    old = os.umask(0o027)
    try:
        assert main(_train_argv(run)) == 0
    finally:
        os.umask(old)
    for name in ("recipe.toml", "run.json", "metrics.csv", "summary.json"):
        assert (run / name).stat().st_mode & 0o777 == 0o640, name
    weights = next((run / "checkpoints").glob("step-*.safetensors"))
    assert weights.stat().st_mode & 0o777 == 0o640


# -- a full disk ---------------------------------------------------------------------------------------------


def test_full_disk_stops_with_one_line_keeps_the_last_checkpoint_and_resumes_exactly(tmp_path, capsys, monkeypatch):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(_train_argv(ref, epochs=2)) == 0
    real = checkpoint_mod._write_bytes
    calls = {"n": 0}

    def fill_up(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] >= 9:  # the first epoch's checkpoints fit (7 files), then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(checkpoint_mod, "_write_bytes", fill_up)
    capsys.readouterr()
    err = _one_line_exit_2(capsys, _train_argv(run, epochs=2), "disk full")
    assert "--resume" in err and "last good checkpoint" in err
    last = CheckpointDir(run / "checkpoints").latest()
    assert last is not None
    assert (run / "metrics.csv").read_text().count("\n") >= 2  # header + the first epoch
    # No orphan of the failed checkpoint takes up space.
    live = {p.name.split(".")[0] for p in (run / "checkpoints").glob("step-*.json")}
    assert all(p.name.split(".")[0] in live for p in (run / "checkpoints").glob("step-*"))
    monkeypatch.setattr(checkpoint_mod, "_write_bytes", real)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    a = load_weights(CheckpointDir(ref / "checkpoints").latest().weights)[0]
    b = load_weights(CheckpointDir(run / "checkpoints").latest().weights)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (ref / "metrics.csv").read_text().count("\n") == (run / "metrics.csv").read_text().count("\n")


# -- lengths given on the command line -----------------------------------------------------------------------


def _recipe(*argv: str):
    messages: list[str] = []
    return new_recipe(build_parser().parse_args(["train", *argv]), log=messages.append), messages


def test_epochs_flag_wins_over_the_recipes_iterations_and_moves_the_milestones():
    r, messages = _recipe("resnet20", "--recipe", "resnet_cifar", "--epochs", "3")
    assert (r.epochs, r.iterations) == (3, 0)
    assert r.milestones == (1.5, 2.25) and r.milestone_unit == "epoch"  # 32k and 48k of 64k
    assert any("replaces the recipe's iterations = 64000" in m for m in messages)
    r, _ = _recipe("resnet20", "--recipe", "resnet_cifar", "--set", "epochs=3")
    assert (r.epochs, r.iterations) == (3, 0)


def test_a_new_length_scales_epoch_and_iteration_milestones():
    r, messages = _recipe("resnet50", "--recipe", "resnet_imagenet", "--epochs", "9")
    assert r.milestones == (3.0, 6.0)  # 30 and 60 of 90
    assert any("scaled to [3, 6]" in m for m in messages)
    r, _ = _recipe("resnet56", "--recipe", "resnet_cifar", "--set", "iterations=32000")
    assert r.milestones == (16000.0, 24000.0) and r.milestone_unit == "iteration"
    r, messages = _recipe("resnet56", "--recipe", "resnet_cifar", "--epochs", "3", "--set", "milestones=[2]")
    assert r.milestones == (2.0,)  # given explicitly: kept
    r, messages = _recipe("resnet20", "--recipe", "resnet_imagenet")
    assert r.milestones == (30.0, 60.0) and not messages


def test_seed_flag_is_set_seed():
    assert _recipe("lenet5", "--seed", "7")[0].seed == 7
    assert _recipe("lenet5", "--seed", "7")[0] == _recipe("lenet5", "--set", "seed=7")[0]


def test_milestones_as_people_type_them_and_non_finite_numbers():
    assert load_recipe(None, ["schedule=step", "milestones=30,60"]).milestones == (30.0, 60.0)
    with pytest.raises(Exception, match=r"milestones must be a list of floats, e\.g\. milestones=\[30, 60\]"):
        load_recipe(None, ["milestones=thirty"])
    for value in ("inf", "nan", "-inf"):
        with pytest.raises(Exception, match="lr must be"):
            load_recipe(None, [f"lr={value}"])
    with pytest.raises(Exception, match="finite"):
        load_recipe(None, ["weight_decay=inf"])


# -- family defaults ------------------------------------------------------------------------------------------


def test_every_family_has_a_default_recipe_that_is_a_valid_recipe():
    import cnnlab
    from cnnlab.registry import get_entry

    families = {get_entry(n).family.name for n in cnnlab.list_models()}
    files = {p.stem for p in FAMILY_DIR.glob("*.toml")}
    assert families == files
    import tomllib

    for p in FAMILY_DIR.glob("*.toml"):
        fields = tomllib.loads(p.read_text())
        assert not {"model", "data", "epochs", "iterations", "image_size"} & fields.keys(), p.name
        from_dict(fields)  # every key and value checked
        assert p.read_text().startswith("# "), f"{p.name} cites its source first"


def test_train_without_recipe_uses_the_family_default_and_says_so():
    r, messages = _recipe("lenet5", "--data", "shapes")
    assert r.augment == "none" and r.schedule == "onecycle"  # not the generic flip (digits have a handedness)
    assert any("lenet family's defaults" in m for m in messages)
    r, messages = _recipe("lenet5", "--recipe", "main")
    assert not any("family" in m for m in messages)


# -- processes, devices, signals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--nproc", "0"], "--nproc must be at least 1"),
        (["--nproc", "-2"], "--nproc must be at least 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--device", "cuda:x"], "unknown device"),
    ],
)
def test_bad_process_and_device_flags(tmp_path, capsys, extra, needle):
    _one_line_exit_2(capsys, _train_argv(tmp_path / "r", *extra), needle)
    assert not (tmp_path / "r").exists()


def test_nproc_one_is_a_single_process(tmp_path):
    assert main(_train_argv(tmp_path / "r", "--nproc", "1")) == 0
    assert json.loads((tmp_path / "r" / "env.json").read_text())["world_size"] == 1


def test_sigint_saves_and_exits_130_then_resumes(tmp_path):
    run = tmp_path / "run"
    argv = _train_argv(run, epochs=30)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((run / "checkpoints").glob("step-*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "stopped by SIGINT" in out and "Traceback" not in out
    assert CheckpointDir(run / "checkpoints").latest() is not None


def test_resume_refuses_a_state_file_that_holds_python_objects(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(run)) == 0
    manifest = sorted((run / "checkpoints").glob("step-*.json"))[-1]
    info = json.loads(manifest.read_text())
    state = run / "checkpoints" / info["files"]["state"]["name"]
    torch.save({"step": 1, "hook": os.getcwd}, state)  # a pickled callable: weights_only refuses it
    import hashlib

    data = state.read_bytes()
    info["files"]["state"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest.write_text(json.dumps(info))  # checksums that match, as an attacker would write them
    (run / "summary.json").unlink()
    err = _one_line_exit_2(capsys, ["train", "--resume", str(run), "--no-progress"], "refused")
    assert "weights_only" not in err and "never unpickles" in err


def test_nonfinite_message_names_what_exists_and_fits_the_precision(tmp_path):
    from cnnlab.train.loop import _nonfinite_message

    r = load_recipe(None)
    empty = CheckpointDir(tmp_path / "none")
    msg = _nonfinite_message(5, 0, 3, r, empty)
    assert "fp32" not in msg and "no checkpoint was written" in msg and str(tmp_path) not in msg
    assert "precision=fp32" in _nonfinite_message(5, 0, 3, r.replace(precision="fp16"), empty)
    ckpts = CheckpointDir(tmp_path / "ck")
    ckpts.save(4, 0, {"w": torch.ones(2)}, {"x": 1}, {"model": "m"})
    msg = _nonfinite_message(5, 0, 7, r, ckpts)
    path = msg.split("kept: ")[1]
    assert Path(path).is_file()


# -- inputs smaller than the model's ------------------------------------------------------------------------


def test_data_below_the_models_minimum_is_resized_and_said_once(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "lenet5", "--data", "shapes:train=160,test=32,size=28,classes=4", "--epochs", "1",
            "--out", str(run), "--no-progress", *SETS]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("resized to 32x32") == 1
    assert json.loads((run / "run.json").read_text())["image_size"] == 32
    assert "image_size = 32" in (run / "recipe.toml").read_text()  # so --resume reads the same size
    _one_line_exit_2(capsys, [*argv[: -len(SETS)], "--strict-size", *SETS, "--out", str(tmp_path / "s")], "too small")
    # An image_size the user chose is kept, and refused when too small.
    _one_line_exit_2(capsys, [*argv, "--out", str(tmp_path / "t"), "--set", "image_size=20"], "too small")


def test_resolution_below_the_papers_input_is_said():
    from cnnlab.registry import create_model
    from cnnlab.train.setup import fit_input_size

    messages: list[str] = []

    class Data:  # the two fields fit_input_size reads
        image_size, spec = 32, "shapes"

    r = load_recipe(None)
    assert fit_input_size(r, Data, create_model("mobilenet_v1_025", num_classes=10), messages.append) is r
    assert messages == ["training mobilenet_v1_025 at 32x32 (its paper's input is 224x224)"]


# -- the ImageNet layout, recorded paths ---------------------------------------------------------------------


def _image_folder(root: Path, splits: dict[str, int], size: int = 32) -> None:
    g = np.random.default_rng(0)
    for split, n in splits.items():
        for c, colour in enumerate(((220, 30, 30), (30, 30, 220))):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(colour) + g.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")


def test_imagenet_layout_trains_selects_and_reports_on_val(tmp_path, capsys):
    _image_folder(tmp_path / "imagenet", {"train": 48, "val": 10})
    run = tmp_path / "run"
    argv = ["train", "lenet5", "--data", f"folder:{tmp_path / 'imagenet'}", "--epochs", "1", "--out", str(run),
            "--no-progress", "--set", "batch_size=16", "--set", "threads=1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no test split" in out and "val: top-1" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_split"] == "val" and summary["test_images"] == 20


def _npz(path: Path, n: int = 160, classes: int = 4) -> None:
    from cnnlab.data.shapes import generate

    x, y = generate(n, 32, split="train", seed=0, num_classes=classes)
    xt, yt = generate(32, 32, split="test", seed=0, num_classes=classes)
    np.savez(path, x_train=x.transpose(0, 2, 3, 1), y_train=y, x_test=xt.transpose(0, 2, 3, 1), y_test=yt)


def test_data_paths_are_recorded_resolved_and_resume_can_point_elsewhere(tmp_path, monkeypatch, capsys):
    work, other = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), other.mkdir()
    _npz(work / "d.npz")
    monkeypatch.chdir(work)
    argv = ["train", "lenet5", "--data", "npz:d.npz", "--epochs", "2", "--out", "run", "--no-progress", *SETS]
    assert main(argv) == 0
    run = work / "run"
    assert json.loads((run / "run.json").read_text())["data"] == f"npz:{work / 'd.npz'}"
    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0  # from another directory
    # The data moves; --resume (of an unfinished run) and eval take --data to find it.
    (run / "summary.json").unlink()
    ckpts = sorted((run / "checkpoints").glob("step-*.json"))
    for m in ckpts[1:]:
        m.unlink()  # back to the first checkpoint: unfinished
    (work / "d.npz").rename(other / "moved.npz")
    capsys.readouterr()
    _one_line_exit_2(capsys, ["train", "--resume", str(run), "--no-progress"], "--data SPEC")
    assert main(["train", "--resume", str(run), "--data", "npz:moved.npz", "--no-progress"]) == 0
    assert main(["eval", str(run), "--data", "npz:moved.npz"]) == 0
    capsys.readouterr()
    _one_line_exit_2(capsys, ["train", "--resume", str(run), "--data", "npz:moved.npz", "--epochs", "3"], "--resume")


def test_progress_shows_the_whole_runs_eta_not_only_the_epochs(monkeypatch):
    import io

    from cnnlab.train import progress

    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = progress.Progress(10, "epoch 1/10", stream=out, later=90)  # t0 = 0
    for _ in range(4):
        bar.update(8, force=True)  # drawn at t = 1, 2, 3, 4: one second per step
    last = out.getvalue().split("\r")[-1]
    assert "ETA 0:06" in last and "run ETA 1:36" in last, last  # 6 steps of this epoch, then 90 more
