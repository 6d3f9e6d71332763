"""The sha256 of the weights after a short seeded training, for several models and recipes: a refactoring check.

A change to the training engine that should not change behaviour (issue 12's consolidation) must leave every
fingerprint bit-identical. The figures depend on the CPU's kernels and the torch version, so the file is named
by CPU and compared only with one written on the same kind of machine and torch:

    .venv/bin/python benchmarks/weights_fingerprint.py                    # write benchmarks/results/...-<cpu>.csv
    .venv/bin/python benchmarks/weights_fingerprint.py --check FILE       # compare with an earlier file (writes
                                                                          # nothing unless --csv is given)

Each case trains through `cnnlab.train.loop.train` (one thread, 12 steps of batch 16 on 32x32 `shapes`, a
checkpoint every 5 steps). Exact resume is the tests' job (tests/train/test_resume.py).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import tempfile
from pathlib import Path

import torch

from cnnlab import machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line, result_path, write_csv  # noqa: E402

DATA = "shapes:train=224,test=32,classes=4,size=32"
BASE = {"data": DATA, "epochs": 1, "iterations": 12, "batch_size": 16, "eval_batch_size": 32, "threads": 1,
        "checkpoint_every": 5, "progress": False, "plots": False, "val_fraction": 0.1}  # fmt: skip
CASES: dict[str, dict] = {
    "lenet5-sgd-cosine": {"model": "lenet5", "lr": 0.05},
    "resnet20-step-nesterov": {
        "model": "resnet20",
        "schedule": "step",
        "milestones": [6],
        "milestone_unit": "iteration",
        "nesterov": True,
        "label_smoothing": 0.1,
    },  # fmt: skip
    "mobilenet_v2-rmsprop-exp": {
        "model": "mobilenet_v2",
        "optimizer": "rmsprop",
        "lr": 0.01,
        "schedule": "exp",
        "gamma": 0.9,
        "eps": 0.0316,
    },  # fmt: skip
    "efficientnet_b0-adamw-ema": {
        "model": "efficientnet_b0",
        "optimizer": "adamw",
        "lr": 1e-3,
        "ema_decay": 0.9,
        "grad_clip": 1.0,
    },  # fmt: skip
    "googlenet-aux-onecycle": {"model": "googlenet", "schedule": "onecycle", "lr": 0.05, "augment": "flip,crop:2"},
    "alexnet-plateau-dropout": {"model": "alexnet", "schedule": "plateau", "lr": 0.01, "dropout": 0.3},
    "resnet20-warmup-decay-all": {"model": "resnet20", "lr": 0.1, "warmup_epochs": 0.5, "decay_norm_and_bias": True},
}


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    from cnnlab.train.checkpoint import CheckpointDir

    return CheckpointDir(run / "checkpoints", log=lambda s: None).latest().load_weights()[0]


def fingerprint(name: str, fields: dict, root: Path) -> dict[str, str]:
    from cnnlab.train.loop import train
    from cnnlab.train.recipe import load_recipe

    torch.set_num_threads(1)
    recipe = load_recipe(None, **{**BASE, **fields})
    train(recipe, out=root / name, log=lambda s: None)
    return {"case": name, "sha256": state_sha256(final_weights(root / name))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", help="an earlier CSV to compare with (same CPU and torch)")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE")
    p.add_argument("--csv", help="where to write (default benchmarks/results/weights_fingerprint-<cpu>.csv)")
    args = p.parse_args(argv)
    before = {}
    if args.check:  # read first: the default output path may be the very file being checked
        with open(args.check, newline="") as f:
            before = {r["case"]: r for r in csv.DictReader(f)}
    print(cpu_line(), f"torch {torch.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            row = fingerprint(name, CASES[name], Path(tmp))
            rows.append(row)
            print(f"{name:<28} {row['sha256'][:16]}")
    bad = []
    for r in rows if args.check else []:
        b = before.get(r["case"])
        same = b is not None and b["sha256"] == r["sha256"]
        print(f"{r['case']:<28} {'identical' if same else 'DIFFERENT' if b else 'new'}")
        if b is not None and not same:
            bad.append(r["case"])
        here = (torch.__version__, machine.speed_flags())
        if b is not None and (b.get("torch"), b.get("cpu_flags")) != here:
            print("  (the earlier file comes from another torch or CPU: a difference may not be a change)")
    if args.csv or not args.check:  # a check writes only where asked, never over its own baseline
        out = write_csv(Path(args.csv) if args.csv else result_path("weights_fingerprint"), rows)
        print(f"written: {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
