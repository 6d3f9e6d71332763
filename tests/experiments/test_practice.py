"""The training-practice experiments (augmentation, aux-heads, alexnet-tricks): what is specific to each, read
from the one `reproduce all --quick` run (the generic structure and verdict checks are in test_framework.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from torch import nn

from cnnlab.cli import main
from cnnlab.experiments import alexnet_tricks, augmentation, aux_heads
from cnnlab.train.evaluate import load_checkpoint
from cnnlab.train.recipe import load_recipe
from tests.experiments.conftest import cifar_or_shapes


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_augmentation_arms_train_the_chain_and_gaps_come_from_the_clean_error(quick_all):
    out = quick_all / "augmentation"
    r = _results(out)
    specs = dict((name, spec) for name, _, spec in augmentation.CHAIN)
    for t in r["trials"]:
        run = out / t["run_dir"]
        recipe = load_recipe(run / "recipe.toml")
        assert recipe.augment == specs[t["arm"]] and recipe.train_eval_images == r["config"]["train_eval_images"]
        clean = 1.0 - float(_metrics(run)[-1]["clean_train_acc"])
        assert t["final_clean_train_error"] == pytest.approx(clean)
        assert t["train_test_gap"] == pytest.approx(t["test_error"] - clean)
    assert "Train-test gap" in (out / "report.md").read_text()


def test_aux_heads_arms_differ_only_in_the_heads(quick_all):
    out = quick_all / "aux-heads"
    r = _results(out)
    runs = {t["arm"]: out / t["run_dir"] for t in r["trials"] if t["seed"] == 0}
    aux, noaux = (load_checkpoint(runs[a]).model for a in ("aux", "noaux"))
    assert len(aux.aux_heads) == 2 and not getattr(noaux, "aux_heads", None)
    assert load_recipe(runs["aux"] / "recipe.toml").aux_weight == 0.3
    k = r["evaluation"]["early_epoch"]
    for t in r["trials"]:
        assert t["early_train_error"] == pytest.approx(1.0 - float(_metrics(out / t["run_dir"])[k - 1]["train_acc"]))


def test_steps_to_target_interpolates_between_epochs_and_censors():
    # error 0.9 at step 10, 0.5 at step 20: 0.7 is crossed half-way, at step 15
    assert alexnet_tricks.steps_to([0.9, 0.5], [10, 20], 0.7) == (15.0, True)
    assert alexnet_tricks.steps_to([0.2], [10], 0.6) == (5.0, True)  # from 100% at step 0
    assert alexnet_tricks.steps_to([0.9, 0.8], [10, 20], 0.25) == (20.0, False)  # never: the run's length


def test_alexnet_tricks_arms_and_steps(quick_all):
    out = quick_all / "alexnet-tricks"
    r, cfg = _results(out), alexnet_tricks.Config(**{**_results(quick_all / "alexnet-tricks")["config"]})
    runs = {t["arm"]: out / t["run_dir"] for t in r["trials"] if t["seed"] == 0}
    tanh, relu = load_checkpoint(runs["tanh"]).model, load_checkpoint(runs["relu"]).model
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules()) and any(
        isinstance(m, nn.Tanh) for m in tanh.modules()
    )
    assert any(isinstance(m, nn.LocalResponseNorm) or type(m).__name__ == "LRN" for m in relu.modules())
    nolrn = load_checkpoint(runs["nolrn"]).model
    assert not any(type(m).__name__ in ("LRN", "LocalResponseNorm") for m in nolrn.modules())
    pools = [m for m in load_checkpoint(runs["pool22"]).model.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    for t in r["trials"]:
        rows = _metrics(out / t["run_dir"])
        errors = [1.0 - float(x["clean_train_acc"]) for x in rows]
        want = alexnet_tricks.steps_to(errors, [int(x["step"]) for x in rows], cfg.target)
        assert (t["steps_to_target"], t["reached_target"]) == pytest.approx(want)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["alexnet-tricks", "--set", "target=1.5"], "target in (0, 1)"),
        (["aux-heads", "--set", "narrow=0"], "narrow must be >= 1"),
        (["augmentation", "--set", "train_eval_image=5"], "did you mean train_eval_images"),
    ],
)
def test_bad_config_is_one_line_exit_2(argv, message, tmp_path, capsys):
    assert main(["reproduce", *argv, "--quick", "--data", cifar_or_shapes(), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_module_docstrings_name_their_sources():
    for mod in (augmentation, aux_heads, alexnet_tricks):
        assert mod.EXPERIMENT.source.split(",")[0] in (mod.__doc__ or "")
