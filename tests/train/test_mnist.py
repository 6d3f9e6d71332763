"""Real data: lenet5 on MNIST (../shared/data/mnist.npz) reaches at least 98.5% test accuracy."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.train.loop import train
from cnnlab.train.recipe import load_recipe
from tests.conftest import SHARED

MNIST = SHARED / "data" / "mnist.npz"


@pytest.mark.slow
def test_lenet5_on_mnist_reaches_98_5_percent(tmp_path):
    if not MNIST.is_file():
        pytest.skip("../shared/data/mnist.npz is absent")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    recipe = load_recipe(
        None,
        model="lenet5",
        data=f"npz:{MNIST.resolve()}",
        image_size=32,  # LeNet-5's 32x32 input (LeCun et al. 1998 pad MNIST's 28x28 digits to 32x32)
        epochs=2,
        batch_size=64,
        optimizer="sgd",
        nesterov=True,
        lr=0.08,
        weight_decay=5e-4,
        schedule="onecycle",
        onecycle_pct=0.15,
        augment="none",  # mirrored digits are other digits
        val_fraction=0.05,
        progress=False,
        plots=False,
    )
    result = train(recipe, out=tmp_path / "run", log=print)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["test_top1"] >= 0.985, summary
