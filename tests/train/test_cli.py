"""The train/eval/predict commands: bad input is one line and exit code 2; a small run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.shapes import generate
from cnnlab.data.tta import CROP_RATIO, tta_views
from cnnlab.data.tta import EVAL_MODES as TTA_MODES
from tests.train.conftest import TINY

SETS = [a for k in ("batch_size", "lr", "threads", "eval_batch_size", "checkpoint_every") for a in
        ("--set", f"{k}={TINY[k]}")]  # fmt: skip


def _one_line_exit_2(capsys, argv: list[str], needle: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err, err
    return err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "lenet5", "--data", "shapes", "--set", "lr_rate=0.1"], "unknown recipe key 'lr_rate'"),
        (["train", "lenet5", "--data", "shapes", "--set", "lr=-0.1"], "lr must be positive"),
        (["train", "lenet5", "--data", "shapes", "--lr", "-0.1"], "lr must be positive"),
        (["train", "lenet5", "--data", "shapes", "--recipe", "resnet_cifra"], "did you mean resnet_cifar"),
        (["train", "lenet5", "--data", "npz:/nonexistent/data.npz", "--no-progress"], "/nonexistent/data.npz"),
        (["eval", "/nonexistent/run", "--tta", "5crop"], "unknown TTA mode '5crop'"),
        (["eval", "/nonexistent/run"], "not found"),
        (["train", "--resume", "/nonexistent/run"], "not found"),
        (["train", "--data", "shapes"], "no model"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, needle):
    _one_line_exit_2(capsys, argv, needle)


def test_input_too_small_for_the_model(capsys, tmp_path):
    argv = ["train", "lenet5", "--data", "shapes:train=64,test=16,size=16", "--out", str(tmp_path / "r"), *SETS,
            "--strict-size"]  # fmt: skip
    _one_line_exit_2(capsys, argv, "too small for lenet5")


def test_bf16_refusal_is_one_line(capsys, tmp_path, monkeypatch):
    from cnnlab.train import numerics

    monkeypatch.setattr(numerics, "cpu_has_native_bf16", lambda: False)
    argv = ["train", "lenet5", "--data", "shapes", "--set", "precision=bf16", "--out", str(tmp_path / "r")]
    _one_line_exit_2(capsys, argv, "bf16")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("cli") / "run"
    argv = ["train", TINY["model"], "--data", TINY["data"], "--epochs", "2", "--out", str(run), "--no-progress", *SETS]
    assert main(argv) == 0
    return run


def test_run_directory_is_complete(tiny_run):
    for name in ("recipe.toml", "run.json", "env.json", "metrics.csv", "curves.png", "summary.json"):
        assert (tiny_run / name).is_file(), name
    summary = json.loads((tiny_run / "summary.json").read_text())
    for key in ("test_top1", "test_top5", "epochs", "train_seconds", "images_per_second", "checkpoints"):
        assert summary[key] is not None, key
    assert summary["epochs"] == 2 and 0 <= summary["test_top1"] <= summary["test_top5"] <= 1
    env = json.loads((tiny_run / "env.json").read_text())
    assert {"git_sha", "torch", "device", "threads"} <= set(env)
    rows = (tiny_run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step,lr,train_loss")


def test_eval_reports_per_class_and_confusion(tiny_run, capsys):
    assert main(["eval", str(tiny_run), "--tta", "flip"]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "per-class accuracy" in out
    report = json.loads((tiny_run / "eval-test-flip.json").read_text())
    assert (tiny_run / "eval-test-flip-confusion.png").stat().st_size > 1000
    cm = np.array(report["confusion"])
    assert cm.sum() == report["n"] == 64
    assert report["top1"] == pytest.approx(np.trace(cm) / cm.sum())
    per_class = [cm[i, i] / cm[i].sum() for i in range(len(cm)) if cm[i].sum()]
    assert sorted(v for v in report["per_class"].values() if v is not None) == pytest.approx(sorted(per_class))


def test_ensemble_of_a_run_with_itself_equals_the_run(tiny_run, capsys):
    assert main(["eval", str(tiny_run), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    last = json.loads((tiny_run / "summary.json").read_text())["checkpoints"]["last"]
    assert main(["eval", str(tiny_run), "--ensemble", last, "--json"]) == 0
    ens = json.loads(capsys.readouterr().out)
    assert len(ens["members"]) == 2 and ens["n"] == single["n"]
    assert single["top1"] == json.loads((tiny_run / "summary.json").read_text())["test_top1"]


def test_predict_prints_class_names(tiny_run, tmp_path, capsys):
    x, y = generate(3, 32, split="test", seed=5, num_classes=4)
    paths = []
    for i, img in enumerate(x):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(img.transpose(1, 2, 0)).save(p)
        paths.append(str(p))
    assert main(["predict", str(tiny_run), *paths, "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    names = json.loads((tiny_run / "run.json").read_text())["classes"]
    for line in lines:
        assert sum(name in line for name in names) >= 2 and line.count("%") == 2


def test_tta_views_against_explicit_crops():
    x = torch.randn(2, 3, 32, 32)
    assert [len(tta_views(x, m)) for m in TTA_MODES] == [1, 2, 10, 6]
    views = tta_views(x, "10crop")
    big = torch.nn.functional.interpolate(x, size=(round(32 / CROP_RATIO),) * 2, mode="bilinear")
    assert torch.equal(views[0], big[..., :32, :32])  # top-left corner
    assert torch.equal(views[3], big[..., -32:, -32:])  # bottom-right corner
    assert torch.equal(views[9], views[4].flip(3))  # mirrored centre
    assert all(v.shape == x.shape for v in views)


def test_nproc_relaunch_keeps_every_option():
    import argparse

    from cnnlab.cli import train as train_cmd

    p = argparse.ArgumentParser()
    train_cmd.add_arguments(p)
    args = p.parse_args(["resnet20", "--data", "shapes", "--recipe", "main", "--set", "lr=0.1", "--epochs", "2",
                         "--nproc", "2", "--out", "runs/x", "--no-progress"])  # fmt: skip
    argv = train_cmd._relaunch_argv(args)
    assert argv[:2] == ["train", "resnet20"] and "--nproc" not in argv
    again = p.parse_args(argv[1:])
    for key in ("model", "data", "recipe", "overrides", "epochs", "out", "no_progress"):
        assert getattr(again, key) == getattr(args, key), key
