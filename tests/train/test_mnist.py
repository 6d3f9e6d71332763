"""Real data: lenet5 on MNIST (../shared/data/mnist.npz) reaches at least 98.5% test accuracy."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.train.rundir import read_run
from tests.conftest import SHARED

MNIST = SHARED / "data" / "mnist.npz"


@pytest.mark.slow
def test_lenet5_on_mnist_reaches_98_5_percent(tmp_path):
    """With no flags but the length: the lenet family's default recipe (configs/families/lenet.toml, the tuned
    recipe of docs/training.md) and MNIST's 28x28 digits resized to LeNet-5's 32x32 input."""
    if not MNIST.is_file():
        pytest.skip("../shared/data/mnist.npz is absent")
    from cnnlab.cli import main

    threads = max(1, min(2, torch.get_num_threads()))
    run = tmp_path / "run"
    argv = ["train", "lenet5", "--data", f"npz:{MNIST.resolve()}", "--epochs", "2", "--out", str(run)]
    assert main([*argv, "--no-progress", "--set", f"threads={threads}", "--set", "plots=false"]) == 0
    recipe = read_run(run)[0]
    assert (recipe.image_size, recipe.augment, recipe.schedule) == (32, "none", "onecycle")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_top1"] >= 0.985, summary
