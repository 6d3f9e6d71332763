"""Several processes: torchrun with 2 CPU processes (gloo) matches one process with the same global batch,
and a worker killed under `torchrun --max-restarts 1` is restarted and the run resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.train.checkpoint import CheckpointDir, load_weights
from cnnlab.train.data_adapter import open_data
from cnnlab.train.loop import train
from cnnlab.train.recipe import load_recipe
from tests.train.conftest import TINY

pytestmark = pytest.mark.slow  # two torch processes start per test: tens of seconds on a busy 2-core machine


def _sets(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        value = f'"{v}"' if isinstance(v, str) else str(v).lower()
        out += ["--set", f"{k}={value}"]
    return out


def _torchrun(run: Path, extra: dict, max_restarts: int = 0) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        f"--max-restarts={max_restarts}", "-m", "cnnlab", "train", "--out", str(run), *_sets({**TINY, **extra}),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _final(run: Path) -> dict[str, torch.Tensor]:
    return load_weights(CheckpointDir(run / "checkpoints").latest().weights)[0]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    extra = {"epochs": 2}
    recipe = load_recipe(None, **{**TINY, **extra})
    open_data(recipe)  # build the cache once, before two processes want it
    proc = _torchrun(tmp_path / "ddp", extra)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    torch.set_num_threads(1)
    from cnnlab.train.rundir import read_run

    recipe = read_run(tmp_path / "ddp")[0]  # what the command line made of TINY (the family defaults beneath it)
    train(recipe, out=tmp_path / "single", log=lambda s: None)
    a, b = _final(tmp_path / "ddp"), _final(tmp_path / "single")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs between 2 and 1 processes")
    assert not torch.equal(a["stages.0.0.weight"], torch.zeros_like(a["stages.0.0.weight"]))
    # The reported figure, not only the weights: every rank scores its shard of the test set with the best
    # checkpoint's weights (rank 1 once read the previous best while rank 0 was writing the new one).
    ddp_summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    single = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert ddp_summary["tested_weights"] == single["tested_weights"] == "best"
    assert ddp_summary["test_images"] == single["test_images"]
    assert abs(ddp_summary["test_top1"] - single["test_top1"]) <= 1 / single["test_images"]
    assert ddp_summary["test_loss"] == pytest.approx(single["test_loss"], rel=1e-3)
    from cnnlab.cli import main

    assert main(["eval", str(tmp_path / "ddp"), "--json"]) == 0
    report = json.loads((tmp_path / "ddp" / "eval-test-none.json").read_text())
    assert report["top1"] == ddp_summary["test_top1"]


# A torchrun worker in which rank 0 writes its best checkpoint slowly: the final test must still score every rank's
# shard with the new best weights (rank 1 once read the previous best.json while rank 0 was writing the new one).
SLOW_BEST_WORKER = """
import os, sys, time
from cnnlab.train.checkpoint import CheckpointDir
from cnnlab.cli import main
real = CheckpointDir.save_best
def slow(self, *a, **k):
    if os.environ.get("RANK") == "0":
        time.sleep(1.5)
    return real(self, *a, **k)
CheckpointDir.save_best = slow
sys.exit(main(sys.argv[1:]))
"""


def test_reported_test_accuracy_uses_the_final_best_weights_on_every_rank(tmp_path):
    from cnnlab.registry import create_model
    from cnnlab.train import ddp
    from cnnlab.train.loop import evaluate_loader
    from cnnlab.train.rundir import read_run

    extra = {"epochs": 2, "lr": 0.1, "schedule": "constant"}
    open_data(load_recipe(None, **{**TINY, **extra}))
    worker = tmp_path / "worker.py"
    worker.write_text(SLOW_BEST_WORKER)
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(worker),
           "train", "--out", str(run), *_sets({**TINY, **extra})]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((run / "summary.json").read_text())
    best = CheckpointDir(run / "checkpoints").best()
    assert best.step == summary["steps"], "the last epoch must improve for this test to bite"
    # The same figure from one process, with the best checkpoint's weights.
    torch.set_num_threads(1)
    recipe = read_run(run)[0]
    data = open_data(recipe)
    model = create_model(recipe.model, num_classes=len(data.classes), in_chans=data.in_chans)
    model.load_state_dict(load_weights(best.weights)[0])
    ref = evaluate_loader(model, data.test, recipe, torch.device("cpu"), ddp.Dist())
    assert summary["test_loss"] == pytest.approx(ref["loss"], rel=1e-5)
    assert summary["test_top1"] == ref["top1"]
    from cnnlab.cli import main

    assert main(["eval", str(run), "--json"]) == 0
    assert json.loads((run / "eval-test-none.json").read_text())["top1"] == summary["test_top1"]


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(p.name))
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the worker")
def test_killed_worker_is_restarted_and_resumes_from_its_checkpoint(tmp_path):
    extra = {"epochs": 3, "checkpoint_every": 2}
    open_data(load_recipe(None, **{**TINY, **extra}))
    run = tmp_path / "ddp"
    proc = _torchrun(run, extra, max_restarts=1)
    deadline = time.time() + 300
    victim = None
    while time.time() < deadline and proc.poll() is None:
        ck = CheckpointDir(run / "checkpoints", log=lambda s: None).latest() if (run / "checkpoints").exists() else None
        if ck is not None and ck.step >= 6:
            victim = next((p for p in _children(proc.pid) if _rank_of(p) == 1), None)
            if victim is not None:
                os.kill(victim, signal.SIGKILL)
                break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=600)
    if victim is None:
        pytest.skip("the run finished before a worker could be killed")  # pragma: no cover
    assert proc.returncode == 0, out
    assert "resumed" in out and "from step-" in out, out
    summary = (run / "summary.json").read_text()
    assert '"epochs": 3' in summary
