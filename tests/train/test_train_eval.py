"""recipe.train_eval_images: each epoch's error on a fixed, un-augmented subset of the training split."""

from __future__ import annotations

import csv

import pytest
import torch

from cnnlab.train import ddp
from cnnlab.train.checkpoint import CheckpointDir
from cnnlab.train.data_adapter import open_data, train_subset
from cnnlab.train.evaluate import evaluate_loader, load_checkpoint
from cnnlab.train.loop import train
from cnnlab.train.recipe import load_recipe
from cnnlab.train.rundir import METRIC_FIELDS
from tests.train.conftest import TINY


def _rows(run) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_clean_train_columns_equal_an_evaluation_of_the_final_weights(tmp_path):
    torch.set_num_threads(1)
    recipe = load_recipe(None, **{**TINY, "augment": "flip,crop:4", "train_eval_images": 48})
    run = tmp_path / "run"
    assert train(recipe, out=run, log=lambda _: None).status == "finished"
    rows = _rows(run)
    assert len(rows) == recipe.epochs and all(r["clean_train_acc"] != "" for r in rows)
    last = CheckpointDir(run / "checkpoints").latest()
    model = load_checkpoint(last.weights).model
    bundle = open_data(recipe)
    assert bundle.train_eval is not None and len(bundle.train_eval.ds.y) == 48
    d = ddp.setup("cpu")
    v = evaluate_loader(model, bundle.train_eval, recipe, torch.device("cpu"), d)
    assert float(rows[-1]["clean_train_acc"]) == pytest.approx(v["top1"], abs=1e-6)
    assert float(rows[-1]["clean_train_loss"]) == pytest.approx(v["loss"], rel=1e-4)


def test_subset_is_fixed_whatever_the_seed_and_absent_by_default(tmp_path):
    a = open_data(load_recipe(None, **{**TINY, "train_eval_images": 30, "seed": 1})).train_eval
    b = open_data(load_recipe(None, **{**TINY, "train_eval_images": 30, "seed": 7})).train_eval
    assert torch.equal(a.ds.y, b.ds.y) and torch.equal(a.ds.x, b.ds.x)
    assert open_data(load_recipe(None, **TINY)).train_eval is None
    full = open_data(load_recipe(None, **TINY)).train.ds
    assert train_subset(full, 10**6) is full  # asking for more than there is: the whole split
    assert {"clean_train_loss", "clean_train_acc"} <= set(METRIC_FIELDS)


def test_negative_train_eval_images_is_refused():
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="train_eval_images must be >= 0"):
        load_recipe(None, **{**TINY, "train_eval_images": -1})
