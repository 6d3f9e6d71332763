"""`cnnlab reproduce list | NAME | all [--quick] [--set key=value ...] [--data SPEC] [--seeds N] [--out DIR]`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HELP = "reproduce a claim of the lecture notes: measured, beside the paper's figure, with a verdict"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="an experiment name, `list`, or `all` (see `cnnlab reproduce list`)")
    p.add_argument("--quick", action="store_true", help="the CI size: under about a minute, numbers mean little")
    p.add_argument("--scale", choices=("full", "quick", "paper"), help="full (default), quick, paper (a GPU's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config field")
    p.add_argument("--config", help="a TOML file of config fields")
    p.add_argument("--data", help="dataset spec (default: CIFAR-10, found as docs/reproduce.md says)")
    p.add_argument("--download", action="store_true", help="fetch and verify the official CIFAR-10 archive")
    p.add_argument("--seeds", type=int, help="seeds per arm (shortcut for --set seeds=N)")
    # Without it argparse would read `--seed 1` as an abbreviation of --seeds: one seed, not seed 1.
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help="experiment directory (default runs/reproduce/NAME[-quick])")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")
    p.add_argument("--plan", action="store_true", help="print the trials and their cost (analyzer), run nothing")


def _changes(args: argparse.Namespace) -> dict:
    from cnnlab.train.recipe import read_recipe_file, tomllib

    changes: dict = {}
    if args.config:
        changes.update(read_recipe_file(args.config))
    for item in args.overrides:
        from cnnlab.errors import CnnlabError

        if "=" not in item:
            raise CnnlabError(f"--set expects key=value, got '{item}'")
        key, raw = (s.strip() for s in item.split("=", 1))
        try:
            changes[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            changes[key] = raw  # bare words are strings
    if args.data:
        changes["data"] = args.data
    if args.seed is not None:
        from cnnlab.errors import CnnlabError

        raise CnnlabError("an experiment trains every arm at seeds 0..N-1: --seeds N sets N (there is no --seed)")
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    return changes


def _short_cpu(cpu: str) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon': the list's column, not the provenance (that keeps it whole)."""
    words = [w.replace("(R)", "").replace("(TM)", "") for w in cpu.split()]
    return " ".join(w for w in words if w and w.lower() not in ("processor", "cpu"))[:22]


def list_experiments() -> int:
    import json

    from cnnlab.experiments import EXPERIMENTS

    docs = Path(__file__).resolve().parents[3] / "docs" / "reproduce"
    print(f"{'name':<14} {'full run':>8}  {'measured on':<22} claim (source)")
    for name, exp in EXPERIMENTS.items():
        done = docs / name / "results.json"
        took, cpu = "not run", ""
        if done.is_file():
            r = json.loads(done.read_text())
            took, cpu = f"{r['timing']['wall_seconds'] / 60:.0f} min", _short_cpu(r["provenance"].get("cpu", "?"))
        cfg = exp.config()
        data = cfg.data + (f" and {cfg.mnist}" if getattr(cfg, "mnist", "") else "")  # the precision lab's 2nd task
        print(f"{name:<14} {took:>8}  {cpu:<22} {exp.claim} ({exp.source}); data {data}")
    return 0


def _run_one(name: str, args: argparse.Namespace, scale: str, out: str | None) -> int:
    from cnnlab.experiments import data, get_experiment, runner
    from cnnlab.experiments.base import make_config

    exp = get_experiment(name)
    changes = _changes(args)
    if args.download and "data" not in changes:
        changes["data"] = data.download_cifar10()
    cfg = make_config(exp, scale, changes)
    out = out or f"runs/reproduce/{name}" + ("-quick" if scale == "quick" else "")
    argv = sys.argv[1:] if sys.argv[1:2] == ["reproduce"] else ["reproduce", name]
    command = "cnnlab " + " ".join(shlex.quote(a) for a in argv)
    import torch

    no_gpu = scale == "paper" and args.device != "cuda" and not torch.cuda.is_available()
    if args.plan or no_gpu:
        lines = runner.plan(exp, cfg)  # first: a config the arms refuse is one line, with no header before it
        print(f"{name} at scale {scale}:")
        for line in lines:
            print(f"  {line}")
        if no_gpu and not args.plan:
            print("  --scale paper is sized for a GPU and none is here: nothing run (--device cuda on a GPU machine)")
        return 0
    return 0 if runner.run(exp, cfg, out, scale=scale, device=args.device, command=command) is not None else 130


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.experiments import EXPERIMENTS

    scale = args.scale or ("quick" if args.quick else "full")
    if args.quick and args.scale not in (None, "quick"):
        raise CnnlabError(f"--quick and --scale {args.scale} contradict each other")
    if args.experiment == "list":
        return list_experiments()
    if args.experiment == "all":
        root = args.out or "runs/reproduce" + ("-quick" if scale == "quick" else "")
        for name in EXPERIMENTS:
            code = _run_one(name, args, scale, str(Path(root) / name))
            if code:
                return code
        return 0
    return _run_one(args.experiment, args, scale, args.out)
