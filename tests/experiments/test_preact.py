"""preact: the two arms are one net with its BN and ReLU moved, and the early and gap figures come from the curves
(read from the one `reproduce all --quick` run; the generic structure and verdict checks are in test_framework.py)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from cnnlab.cli import main
from cnnlab.experiments import preact
from cnnlab.experiments.base import make_config
from cnnlab.train.evaluate import load_checkpoint


def test_the_arms_have_the_same_parameters_and_differ_in_the_unit(quick_all):
    out = quick_all / "preact"
    r = json.loads((out / "results.json").read_text())
    d = r["config"]["depth"]
    runs = {t["arm"]: out / t["run_dir"] for t in r["trials"] if t["seed"] == 0}
    original, pre = (load_checkpoint(runs[a]).model for a in (f"original{d}", f"preact{d}"))
    shapes = sorted(tuple(p.shape) for p in original.parameters())
    assert shapes == sorted(tuple(p.shape) for p in pre.parameters())  # the same weights, BN ones included
    assert not pre.spec.stem_norm and pre.spec.preact and not original.spec.preact
    assert pre.spec.shortcut == original.spec.shortcut == "A"
    k = r["evaluation"]["early_epoch"]
    for t in r["trials"]:
        with open(out / t["run_dir"] / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert t["early_train_error"] == pytest.approx(1.0 - float(rows[k - 1]["train_acc"]))
        assert t["train_test_gap"] == pytest.approx(t["test_error"] - t["final_train_error"])


def test_depth_is_6n_plus_2_and_builds_the_zoo_nets():
    cfg = make_config(preact.EXPERIMENT, "full", {"depth": 32})
    arms = preact.EXPERIMENT.arms(cfg)
    assert [(a.model, a.model_args) for a in arms] == [
        ("resnet32", {}), ("preact_resnet110", {"depths": (5, 5, 5), "shortcut": "A"}),
    ]  # fmt: skip
    from cnnlab.train.setup import create_with_overrides

    x = torch.randn(2, 3, 32, 32)
    nets = [create_with_overrides(a.model, a.model_args, num_classes=10) for a in arms]
    assert [sum(p.numel() for p in n.parameters()) for n in nets] == [464_154] * 2
    assert all(n(x).shape == (2, 10) for n in nets)


@pytest.mark.parametrize("depth", ["21", "2"])
def test_a_depth_that_is_not_6n_plus_2_is_one_line(depth, capsys, tmp_path):
    assert main(["reproduce", "preact", "--set", f"depth={depth}", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "6n + 2" in err, err
