"""test-time: its numbers are cnnlab.train.evaluate's, its pass counts the views', its cache one file per
evaluation (the generic quick test in test_framework.py checks the report and that verdicts follow the numbers)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.experiments import runner
from cnnlab.experiments.base import make_config
from cnnlab.experiments.test_time import EXPERIMENT, MODES
from cnnlab.train.evaluate import evaluate


def _results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def _by_trial(r: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(t["arm"], t["seed"]): t for t in r["trials"]}


def test_each_number_is_a_fresh_evaluate_of_the_trials(quick_all):
    out = quick_all / "test-time"
    r = _results(out)
    cfg, t = r["config"], _by_trial(r)
    main_arm, other, n, k = cfg["model"], cfg["others"][0], cfg["seeds"], cfg["ensembles"][-1]
    spec = f"npz:{out / 'data.npz'}"

    def run(arm: str, seed: int) -> Path:
        return out / t[arm, seed]["run_dir"]

    for mode in MODES:  # the oracle: `cnnlab eval`'s evaluate, run again on the trial's run directory
        assert t[main_arm, 0][f"test_error_{mode}"] == 1 - evaluate([run(main_arm, 0)], spec, "test", mode)["top1"]
    ring = [run(main_arm, (1 + j) % n) for j in range(k)]  # seed 1's k-ensemble: seeds 1, 2, ... cyclically
    assert t[main_arm, 1][f"test_error_ens{k}"] == 1 - evaluate(ring, spec)["top1"]
    assert t[main_arm, 1][f"test_error_ens{k}_10crop"] == 1 - evaluate(ring, spec, tta="10crop")["top1"]
    mixed = evaluate([run(main_arm, 0), run(other, 0)], spec)
    assert t[main_arm, 0]["test_error_mixed"] == 1 - mixed["top1"]
    assert t[main_arm, 0]["test_error_best_member"] == 1 - max(m["top1"] for m in mixed["members"])
    for x in r["trials"]:  # the centre view is what training's own test measured (float32 mean there)
        assert math.isclose(x["test_error_none"], x["test_error"], abs_tol=1e-6)


def test_passes_are_views_times_members_and_the_figure_is_drawn(quick_all):
    out = quick_all / "test-time"
    r = _results(out)
    views = {"none": 1, "flip": 2, "10crop": 10, "multiscale": 6}  # tta.py's table: 10crop 10, multiscale 2 x 3
    methods = r["evaluation"]["methods"]
    for m in methods:
        assert m["passes"] == views[m["mode"]] * len(m["members"])
        per_seed = [t[m["metric"]] for t in r["trials"] if t["arm"] == m["arm"]]
        assert len(per_seed) == r["config"]["seeds"]
        assert math.isclose(m["test_error"]["mean"], sum(per_seed) / len(per_seed))
    by = {m["metric"]: m for m in methods if m["arm"] == r["config"]["model"]}
    k = r["config"]["ensembles"][-1]
    assert [by[f"test_error_ens{k}"]["passes"], by[f"test_error_ens{k}_10crop"]["passes"]] == [k, 10 * k]
    assert by["test_error_mixed"]["passes"] == 1 + len(r["config"]["others"])
    centre = by["test_error_none"]["macs"]
    assert centre == r["arms"][r["config"]["model"]]["macs"]  # the analyzer's count of the 32 px image
    assert by["test_error_10crop"]["macs"] == 10 * centre  # every crop at the training size
    assert by["test_error_multiscale"]["macs"] > 6 * centre  # larger views cost more than a pass each
    assert (out / "passes.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "![test accuracy against forward passes per image](passes.png)" in report
    assert "| method | forward passes / image |" in report


def test_a_deleted_evaluation_is_the_only_one_computed_again(quick_all, tmp_path):
    src = quick_all / "test-time"
    out = tmp_path / "test-time"
    shutil.copytree(src, out)
    r = _results(src)
    cache = out / "evaluation"
    gone = cache / f"{r['config']['model']}-seed1-10crop.npz"
    kept = {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p != gone}
    prob = np.load(gone)["prob"]
    gone.unlink()
    lines: list[str] = []
    cfg = make_config(EXPERIMENT, "quick", {"data": r["config"]["data"]})  # what `reproduce all --quick` ran
    again = runner.run(EXPERIMENT, cfg, out, scale="quick", log=lines.append)
    assert [s for s in lines if s.startswith("evaluating")] == [f"evaluating {gone.stem}"]
    assert all(s.endswith("read back") for s in lines if s.startswith("trial "))  # no trial trained again
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p != gone} == kept
    assert np.array_equal(np.load(gone)["prob"], prob)
    assert again["evaluation"] == r["evaluation"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"seeds": 3}, "an ensemble of 5 needs 5 seeds, got seeds = 3"),
        ({"ensembles": [2, 1]}, "ensembles must be increasing"),
        ({"others": ["resnet20"]}, "others must name architectures other than resnet20"),
    ],
)
def test_a_config_it_cannot_run_is_refused_before_the_directory(changes, message, tmp_path):
    with pytest.raises(CnnlabError, match=message):
        runner.run(EXPERIMENT, make_config(EXPERIMENT, "full", changes), tmp_path / "x", log=lambda s: None)
    assert not (tmp_path / "x").exists()


def test_too_few_seeds_is_one_line_exit_2(tmp_path, capsys):
    assert main(["reproduce", "test-time", "--seeds", "3", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs 5 seeds" in err and len(err.splitlines()) == 1
