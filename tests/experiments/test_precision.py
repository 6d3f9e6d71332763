"""The numerical-precision experiments (rounding, half, bfloat16, binary): what is specific to each, read from the
one `reproduce all --quick` run (the generic structure and verdict checks are in test_framework.py), and the
MNIST task and counters they share (precision_lab)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.experiments import bfloat16, binary, half, rounding
from cnnlab.experiments import precision_lab as lab
from cnnlab.experiments.base import make_config
from cnnlab.precision.formats import fixed_in_word
from cnnlab.train.evaluate import load_checkpoint
from cnnlab.train.recipe import load_recipe


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _counters_match_metrics(out: Path, r: dict) -> None:
    """Every trial's counters are its metrics.csv's columns summed over the epochs."""
    for t in r["trials"]:
        rows = _rows(out / t["run_dir"])
        for key in lab.COUNTERS:
            assert t["counters"][key] == sum(int(float(x[key] or 0)) for x in rows), (t["arm"], key)
        nz = t["counters"]["updates_nonzero"]
        assert t["lost_updates"] == pytest.approx(t["counters"]["updates_lost"] / nz if nz else 0.0)


def test_rounding_arms_use_fixed_point_in_the_word_and_mnist_is_centred_in_32(quick_all):
    out = quick_all / "rounding"
    r = _results(out)
    cfg = r["config"]
    assert set(r["arms"]) == {f"{t}-{k}" for t in cfg["tasks"] for k in
                              ["fp32", *(f"{x}{fl}" for fl in cfg["fls"] for x in "ns")]}  # fmt: skip
    for t in r["trials"]:
        recipe = load_recipe(out / t["run_dir"] / "recipe.toml")
        task, kind = t["arm"].split("-")
        assert recipe.data.endswith("data-mnist.npz" if task == "mnist" else "data.npz")
        if kind == "fp32":
            assert recipe.emulate == {}
            continue
        f = fixed_in_word(16, int(kind[1:])).name
        assert recipe.emulate == {"weights": f, "activations": f, "gradients": f, "update": f, "master": False,
                                  "rounding": {"n": "nearest", "s": "stochastic"}[kind[0]]}  # fmt: skip
    _counters_match_metrics(out, r)
    with np.load(out / "data-mnist.npz") as z:
        assert z["x_train"].shape[1:3] == (32, 32) and z["x_train"][:, :2].max() == 0  # padded rows are background
    assert r["data"]["datasets"]["mnist"]["image_size"][1:] == [32, 32]
    report = (out / "report.md").read_text()
    assert "rounding.png" in report and (out / "rounding.png").read_bytes()[:4] == b"\x89PNG"
    assert "Does round-to-nearest stall" in report and "MNIST:" in report


def test_rounding_fl_outside_the_word_is_one_line_before_the_directory(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["reproduce", "rounding", "--set", "fls=[8,16]", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "FL=16 is outside a 16-bit word" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main(["reproduce", "rounding", "--set", "tasks=['svhn']", "--out", str(out)]) == 2
    assert "tasks must name" in capsys.readouterr().err


def test_mnist_not_found_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CNNLAB_MNIST", raising=False)
    argv = ["reproduce", "binary", "--data", "shapes:size=32,classes=10,train=200,test=100", "--out", str(tmp_path)]
    assert main([*argv, "--set", "train_images=150", "--set", "batch_size=16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "MNIST not found" in err and "CNNLAB_MNIST" in err and len(err.splitlines()) == 1


def test_mnist_task_is_a_stratified_subset_centred_in_32(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = np.arange(200) % 10
    z = tmp_path / "digits.npz"
    np.savez(z, x_train=rng.integers(1, 255, (200, 28, 28), dtype=np.uint8), y_train=y,
             x_test=rng.integers(1, 255, (60, 28, 28), dtype=np.uint8), y_test=y[:60])  # fmt: skip
    cfg = make_config(binary.EXPERIMENT, "full", {"mnist": f"npz:{z}", "train_images": 100, "test_images": 30,
                                                   "batch_size": 10})  # fmt: skip
    out = lab.mnist_dataset(cfg, {})["mnist"]
    assert out["x_train"].shape == (100, 32, 32, 1) and out["x_test"].shape == (30, 32, 32, 1)
    assert np.bincount(out["y_train"]).tolist() == [10] * 10
    inner = out["x_train"][:, 2:30, 2:30]
    assert inner.min() > 0 and out["x_train"].sum() == inner.sum()  # the digits inside, zeros around them
    cfg = make_config(binary.EXPERIMENT, "full", {"mnist": f"npz:{z}", "tasks": ["cifar10"]})
    assert lab.mnist_dataset(cfg, {}) == {}  # without the task MNIST is not read


def test_half_arms_and_counters(quick_all):
    out = quick_all / "half"
    r = _results(out)
    tables = {name: table for name, _, table in half.ARMS}
    for t in r["trials"]:
        assert load_recipe(out / t["run_dir"] / "recipe.toml").emulate == tables[t["arm"]]
    _counters_match_metrics(out, r)
    assert all(t["final_loss_scale"] is not None for t in r["trials"] if t["arm"] in ("mixed", "nomaster"))
    assert all(t["final_loss_scale"] is None for t in r["trials"] if t["arm"] in ("fp32", "noscale"))
    assert (out / "half.png").read_bytes()[:4] == b"\x89PNG" and "lost updates %" in (out / "report.md").read_text()


def test_bfloat16_runs_autocast_only_where_the_cpu_has_bf16(quick_all):
    from cnnlab.machine import cpu_has_native_bf16

    out = quick_all / "bfloat16"
    r = _results(out)
    assert ("autocast" in r["arms"]) == cpu_has_native_bf16() and r["evaluation"][
        "native_bf16"
    ] == cpu_has_native_bf16()
    for t in r["trials"]:
        run = out / t["run_dir"]
        recipe = load_recipe(run / "recipe.toml")
        assert recipe.precision == ("bf16" if t["arm"] == "autocast" else "fp32")
        assert recipe.emulate == (bfloat16.BF16 if t["arm"] == "emulated" else {})
        summary = json.loads((run / "summary.json").read_text())
        assert t["step_ms"] == pytest.approx(1000 * summary["train_seconds"] / int(_rows(run)[-1]["step"]))
    assert "ms/step" in (out / "report.md").read_text()


def test_bfloat16_without_native_bf16_is_the_emulation_only(monkeypatch):
    monkeypatch.setattr("cnnlab.machine.cpu_has_native_bf16", lambda: False)
    cfg = make_config(bfloat16.EXPERIMENT, "quick")
    assert [a.name for a in bfloat16.EXPERIMENT.arms(cfg)] == ["fp32", "emulated"]


def test_binary_arms_binarize_weights_and_binarynet_the_activations(quick_all):
    from cnnlab.precision.binary import BinaryActivation

    out = quick_all / "binary"
    r = _results(out)
    assert set(r["arms"]) == {"mnist-fp32", "mnist-det", "mnist-sto", "mnist-bnn", "cifar10-fp32", "cifar10-det",
                              "cifar10-sto"}  # fmt: skip
    tables = {v: table for v, _, table, _ in binary.VARIANTS}
    runs = {t["arm"]: out / t["run_dir"] for t in r["trials"] if t["seed"] == 0}
    for arm, run in runs.items():
        recipe = load_recipe(run / "recipe.toml")
        assert recipe.emulate == tables[arm.split("-")[1]] and recipe.optimizer == "adamw"
    acts = [m for m in load_checkpoint(runs["mnist-bnn"]).model.modules() if isinstance(m, BinaryActivation)]
    assert acts and not any(isinstance(m, BinaryActivation) for m in load_checkpoint(runs["mnist-det"]).model.modules())
    w = load_checkpoint(runs["cifar10-det"]).model.head.fc.weight
    assert float(w.detach().abs().max()) <= 1.0  # the real-valued weights are clipped to [-1, 1]
    assert (out / "binary.png").read_bytes()[:4] == b"\x89PNG"


def test_read_counters_sums_the_epochs_and_leaves_fp32_at_zero(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    head = ["epoch", *lab.COUNTERS, "loss_scale"]
    rows = [[1, 10, 4, 20, 1, 0, 0, 0, 65536.0], [2, 10, 6, 20, 3, 0, 0, 1, 32768.0]]
    with open(run / "metrics.csv", "w", newline="") as f:
        csv.writer(f).writerows([head, *rows])
    c = lab.read_counters(run)
    assert c["totals"]["updates_lost"] == 10 and c["totals"]["grads_flushed"] == 4 and c["loss_scale"] == 32768.0
    with open(run / "metrics.csv", "w", newline="") as f:
        csv.writer(f).writerows([head, [1, *[""] * (len(head) - 1)]])
    assert lab.read_counters(run) == {"per_epoch": {k: [0] for k in lab.COUNTERS},
                                      "totals": dict.fromkeys(lab.COUNTERS, 0), "loss_scale": None}  # fmt: skip


def test_the_four_are_registered_with_their_published_figures():
    from cnnlab.experiments import EXPERIMENTS
    from cnnlab.experiments.published import published

    for exp in (rounding, half, bfloat16, binary):
        name = exp.EXPERIMENT.name
        assert EXPERIMENTS[name] is exp.EXPERIMENT and published(name)["source"]
