"""The experiment framework: config checking, the verdict rules, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.experiments import EXPERIMENTS, get_experiment, stats
from cnnlab.experiments.base import make_config
from cnnlab.experiments.runner import exact_claim
from tests.experiments.conftest import cifar_or_shapes

TINY = ["--set", "train_images=200", "--set", "test_images=60", "--set", "epochs=2", "--set", "batch_size=32",
        "--set", "threads=1", "--set", "checkpoint_every=3", "--set", "deep=32", "--seeds", "1"]  # fmt: skip


def test_paired_verdicts_follow_the_t_interval():
    same = stats.paired([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert stats.directional(same) == stats.INCONCLUSIVE
    up = stats.paired([0.10, 0.20, 0.30], [0.15, 0.26, 0.34])  # d = 0.05, 0.06, 0.04: tight, above 0
    assert stats.directional(up) == stats.AGREES
    assert stats.directional(stats.paired([0.15, 0.26, 0.34], [0.10, 0.20, 0.30])) == stats.DISAGREES
    noisy = stats.paired([0.1, 0.2, 0.3], [0.2, 0.1, 0.45])
    assert stats.directional(noisy) == stats.INCONCLUSIVE
    assert stats.directional(stats.paired([0.1], [0.9])) == stats.INCONCLUSIVE  # one seed: no noise estimate
    assert math.isclose(up["half_width"], 4.303 * 0.01 / math.sqrt(3), rel_tol=1e-3)
    assert stats.mean_std([1.0, 3.0]) == {"mean": 2.0, "std": math.sqrt(2.0), "n": 2}


def test_a_margin_judges_no_worse_than_and_exact_claims_need_equality():
    # d = higher - lower = -0.005 ± small: below zero, yet above -0.01, so "lower is no worse by 1 pp" agrees.
    slightly_worse = stats.paired([0.305, 0.405, 0.506], [0.30, 0.40, 0.50])
    assert stats.directional(slightly_worse) == stats.DISAGREES
    assert stats.directional(slightly_worse, margin=0.01) == stats.AGREES
    assert stats.directional(slightly_worse, margin=0.005) == stats.INCONCLUSIVE
    far_worse = stats.paired([0.35, 0.46, 0.55], [0.30, 0.40, 0.50])  # d about -0.05: outside a 1 pp margin
    assert stats.directional(far_worse, margin=0.01) == stats.DISAGREES
    assert stats.exact(27 * 64 * 64, 27 * 64 * 64) == stats.AGREES
    assert stats.exact(27 * 64 * 64 + 1, 27 * 64 * 64) == stats.DISAGREES
    assert stats.exact(104, 100, rel_tol=0.05) == stats.AGREES and stats.exact(106, 100, 0.05) == stats.DISAGREES
    claim = exact_claim("s", "same shape", [32, 8, 8], [32, 8, 4], "paper")
    assert claim["verdict"].startswith(stats.DISAGREES) and "32 x 8 x 4" in claim["ours"]


def test_config_keys_and_types_are_checked():
    exp = get_experiment("degradation")
    assert make_config(exp, "quick").epochs == exp.quick["epochs"]
    with pytest.raises(CnnlabError, match="unknown degradation config key 'epoch'; did you mean epochs"):
        make_config(exp, "full", {"epoch": 3})
    with pytest.raises(CnnlabError, match="seeds must be int"):
        make_config(exp, "full", {"seeds": "three"})
    with pytest.raises(CnnlabError, match="unknown experiment 'degredation'; did you mean degradation"):
        get_experiment("degredation")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "degredation"], "did you mean degradation"),
        (["reproduce", "degradation", "--set", "epoch=3"], "did you mean epochs"),
        (["reproduce", "degradation", "--data", "shapes:size=32,classes=10,train=64,test=32", "--set",
          "chanels=3"], "unknown degradation config key"),
        (["reproduce", "degradation", "--data", "shapes:size=32,classes=4,train=400,test=40"], "at least 10 classes"),
        (["reproduce", "smal"], "did you mean small-filters"),  # a prefix is a suggestion too
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_an_arm_the_model_refuses_fails_before_the_directory(tmp_path, capsys):
    """An even kernel for factorize's labnet units is refused at build time, before data or experiment.json,
    so the corrected command in the same --out is not refused as another experiment's run."""
    out = tmp_path / "f"
    argv = ["reproduce", "factorize", "--data", "shapes:size=32,classes=4,train=64,test=32", "--out", str(out)]
    assert main([*argv, "--set", "n=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs an odd kernel" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_wrong_channels_are_one_line(tmp_path, capsys):
    import numpy as np

    z = tmp_path / "gray.npz"
    rng = np.random.default_rng(0)
    y = np.arange(400) % 10
    np.savez(z, x_train=rng.integers(0, 255, (400, 32, 32), dtype=np.uint8), y_train=y,
             x_test=rng.integers(0, 255, (100, 32, 32), dtype=np.uint8), y_test=y[:100])  # fmt: skip
    assert main(["reproduce", "degradation", "--data", f"npz:{z}", "--out", str(tmp_path / "x")]) == 2
    assert "needs 3-channel images" in capsys.readouterr().err


def test_a_directory_of_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps({"experiment": "degradation", "scale": "full", "config": {}}))
    (out / "data.json").write_text("{}")  # started: its data was cut (a start that failed before is replaced)
    assert main(["reproduce", "degradation", "--quick", "--data", cifar_or_shapes(), "--out", str(out)]) == 2
    assert "holds another experiment run" in capsys.readouterr().err


def _comparable(path: Path) -> dict:
    """results.json without what differs between two runs of the same config: wall times, machine load, paths."""
    r = json.loads(path.read_text())
    for key in ("provenance", "timing", "commands"):
        r.pop(key)
    return r


def _start(out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cnnlab", "reproduce", "degradation", "--data", cifar_or_shapes(), *TINY,
           "--out", str(out)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})


@pytest.mark.slow  # two subprocess runs of four trials each
def test_sigkill_in_the_second_trial_then_restart_gives_the_same_results(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _start(whole).wait(timeout=600) == 0
    p = _start(cut)
    second = cut / "trials" / "plain32-seed0" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not (second.is_dir() and any(second.glob("*.safetensors"))):
        assert p.poll() is None, p.stderr.read().decode()
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (cut / "trials" / "plain32-seed0" / "summary.json").exists()  # killed inside trial 2
    first_done = (cut / "trials" / "plain20-seed0" / "summary.json").read_bytes()
    assert _start(cut).wait(timeout=600) == 0
    assert (cut / "trials" / "plain20-seed0" / "summary.json").read_bytes() == first_done  # not rerun
    assert _comparable(cut / "results.json") == _comparable(whole / "results.json")


TRAINING = sorted(n for n, e in EXPERIMENTS.items() if e.measure is None)
MEASUREMENTS = sorted(n for n, e in EXPERIMENTS.items() if e.measure is not None)


@pytest.mark.parametrize("name", MEASUREMENTS)
def test_a_measurement_writes_its_report_and_three_way_verdicts(name, quick_all):
    """Measurements (Experiment.measure) have no arms or trials; their own tests recompute their verdicts."""
    out = quick_all / name
    r = json.loads((out / "results.json").read_text())
    assert r["experiment"] == name and r["scale"] == "quick" and "arms" not in r
    assert {"git_sha", "torch", "cpu", "threads", "load_start"} <= set(r["provenance"])
    assert r["claims"] and all(c["published"] for c in r["claims"])
    assert all(c["verdict"].startswith((stats.AGREES, stats.DISAGREES, stats.INCONCLUSIVE)) for c in r["claims"])
    report = (out / "report.md").read_text()
    assert "## Verdicts" in report and r["rule"] in report


@pytest.mark.parametrize("name", TRAINING)
def test_quick_size_writes_a_report_whose_verdicts_follow_the_numbers(name, quick_all):
    out = quick_all / name
    r = json.loads((out / "results.json").read_text())
    for f in ("report.md", "curves.png", "errors.png"):
        assert (out / f).stat().st_size > 0
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert r["experiment"] == name and r["scale"] == "quick"
    assert {"git_sha", "torch", "cpu", "threads", "load_start"} <= set(r["provenance"])
    assert len(r["trials"]) == r["config"]["seeds"] * len(r["arms"])
    t = r["timing"]  # the framework's share of the wall time, from the train() calls it made
    assert 0 < t["trials_wall_seconds"] <= t["wall_seconds"] + 0.1
    assert t["framework_share"] == pytest.approx(t["wall_seconds"] / t["trials_wall_seconds"] - 1, abs=0.05)
    assert r["claims"]
    for claim in r["claims"]:
        # The verdict is the rule applied to the per-seed numbers in results.json, recomputed here.
        assert claim["published"]
        if claim["kind"] == "exact":  # a cost: the analyzer's count against the paper's formula
            m, e = claim["measured"], claim["expected"]
            want = stats.exact(m, e, claim["rel_tol"]) if isinstance(m, (int, float)) else (
                stats.AGREES if m == e else stats.DISAGREES)  # fmt: skip
            assert claim["verdict"].startswith(want)
            continue
        by_seed = sorted(r["trials"], key=lambda t: t["seed"])
        # (test-time compares two metrics of one arm: lower_metric names the second)
        lo = [t[claim.get("lower_metric", claim["metric"])] for t in by_seed if t["arm"] == claim["lower"]]
        hi = [t[claim["metric"]] for t in by_seed if t["arm"] == claim["higher"]]
        assert claim["verdict"].startswith(stats.directional(stats.paired(lo, hi), claim["margin"]))
    for arm, a in r["arms"].items():
        errs = [t["test_error"] for t in r["trials"] if t["arm"] == arm]
        assert math.isclose(a["test_error"]["mean"], sum(errs) / len(errs))
    report = (out / "report.md").read_text()
    assert "## Verdicts" in report and r["claims"][0]["published"] in report
    # Each trial is a run directory `cnnlab eval` opens.
    assert main(["eval", str(out / r["trials"][0]["run_dir"])]) == 0


def test_list_names_every_experiment(capsys):
    assert main(["reproduce", "list"]) == 0
    out = capsys.readouterr().out
    for name in [*EXPERIMENTS, "transfer"]:
        assert f"\n{name} " in out


def test_plan_costs_every_trial_from_the_analyzer_and_runs_nothing(tmp_path, capsys):
    import cnnlab

    out = tmp_path / "never"
    assert main(["reproduce", "degradation", "--plan", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    macs = cnnlab.analyze("resnet56", (3, 32, 32)).total_macs
    assert f"{macs / 1e6:.1f}M MACs/image" in text and "total: 12 trials" in text
    assert not out.exists()


def test_arm_costs_count_each_arm_at_its_own_image_size():
    import cnnlab
    from cnnlab.experiments.base import Arm
    from cnnlab.experiments.runner import arm_costs

    arms = [Arm("a", "a", "resnet20"), Arm("b", "b", "resnet20", recipe={"image_size": 64})]
    costs, m = arm_costs(arms, [3, 32, 32], 10), cnnlab.create_model("resnet20", num_classes=10)
    assert costs["a"]["macs"] == cnnlab.analyze(m, (3, 32, 32)).total_macs
    assert costs["b"]["macs"] == cnnlab.analyze(m, (3, 64, 64)).total_macs
