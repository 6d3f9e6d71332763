"""Exact resume: a run killed with SIGKILL at a random moment and resumed ends with bit-identical weights."""

from __future__ import annotations

import multiprocessing
import os
import random
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

# EMA and label smoothing ride along: their state must survive a kill too.
EXACT = {**TINY, "ema_decay": 0.9, "label_smoothing": 0.1}


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    ck = CheckpointDir(run / "checkpoints").latest()
    assert ck is not None
    return load_weights(ck.weights)[0]


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs after resume"


def _quiet(_: str) -> None:
    pass


def _child(recipe, out: str) -> None:
    torch.set_num_threads(1)
    train(recipe, out=out, log=_quiet)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    recipe = load_recipe(None, **EXACT)
    # Build the dataset cache and import torch's optimizer machinery (torch._dynamo) first, so the timing
    # below is of training alone and the random kill times spread over the run.
    open_data(recipe)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    run = tmp_path_factory.mktemp("ref") / "run"
    t0 = time.perf_counter()
    result = train(recipe, out=run, log=_quiet)
    assert result.status == "finished"
    return recipe, _final_weights(run), time.perf_counter() - t0


def test_sigkill_at_random_moments_then_resume_is_bit_identical(reference, tmp_path):
    recipe, ref, seconds = reference
    rng = random.Random(1234)
    ctx = multiprocessing.get_context("fork")  # torch is already imported: a forked child starts at once
    killed, attempts, horizon = 0, 0, 0.9 * seconds
    while killed < 5 and attempts < 12:
        attempts += 1
        run = tmp_path / f"trial{attempts}"
        proc = ctx.Process(target=_child, args=(recipe, str(run)))
        proc.start()
        while not (run / "run.json").exists() and proc.is_alive():  # the run directory is made first
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, horizon))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        if proc.exitcode != -signal.SIGKILL:
            horizon *= 0.6  # the run had already finished: this machine is faster than the reference run
            continue
        killed += 1
        result = train(recipe, resume=run, log=_quiet)
        assert result.status == "finished"
        _assert_identical(ref, _final_weights(run))
    assert killed >= 5


@pytest.mark.slow
def test_cli_sigterm_saves_and_resume_finishes_identically(reference, tmp_path):
    """Through the real CLI: SIGTERM stops at a step boundary with a checkpoint, then resume."""
    run = tmp_path / "cli"
    args = [f"{k}={v!r}".replace("'", '"') if isinstance(v, str) else f"{k}={str(v).lower()}" for k, v in EXACT.items()]
    cmd = [sys.executable, "-m", "cnnlab", "train", "--out", str(run)]
    for a in args:
        cmd += ["--set", a]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list((run / "checkpoints").glob("step-*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")  # pragma: no cover - a very fast machine
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "--resume" in out
    stopped = CheckpointDir(run / "checkpoints").latest()
    assert stopped is not None and stopped.info.get("stop") == "SIGTERM"
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--resume", str(run)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    # The command line builds its recipe on the lenet family's defaults: the reference is that recipe, whole.
    from cnnlab.train.rundir import read_run

    torch.set_num_threads(1)
    whole = train(read_run(run)[0], out=tmp_path / "whole", log=_quiet)
    _assert_identical(_final_weights(whole.run_dir), _final_weights(run))
