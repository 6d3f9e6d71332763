"""`cnnlab reproduce transfer [--data SPEC] [--sizes 10,100,1000] [--seeds 3] [--out DIR] [--quick]`."""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = "reproduce an experiment from the lecture notes (transfer: scratch vs linear probe vs fine-tuning)"
EXPERIMENTS = ("transfer",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="which experiment: transfer")
    p.add_argument("--data", help="dataset spec (>= 4 classes; first half = source task, second half = target)")
    p.add_argument("--model", help="zoo model (default resnet20)")
    p.add_argument("--sizes", help="target training images per class, comma separated (default 10,100,1000)")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 3)")
    p.add_argument("--source-steps", type=int, help="pretraining steps (default 300)")
    p.add_argument("--target-steps", type=int, help="steps per target run (default 100)")
    p.add_argument("--threads", type=int, help="torch threads (default 1)")
    p.add_argument(
        "--out", default="runs/reproduce-transfer", help="report directory (default runs/reproduce-transfer)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--quick", action="store_true", help="the CI size: runs in seconds, numbers mean little")


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import CnnlabError, UnknownNameError
    from cnnlab.train import transfer_experiment as te

    if args.experiment not in EXPERIMENTS:
        raise UnknownNameError("experiment", args.experiment, EXPERIMENTS)
    cfg = te.quick_config(args.data) if args.quick else te.Config()
    if args.data and not args.quick:
        cfg.data = args.data
    if args.model:
        from cnnlab.registry import get_entry

        get_entry(args.model)  # unknown names fail here, with suggestions
        cfg.model = args.model
    if args.sizes:
        try:
            cfg.sizes = tuple(sorted({int(s) for s in args.sizes.split(",") if s.strip()}))
        except ValueError:
            raise CnnlabError(f"--sizes takes integers separated by commas, got '{args.sizes}'") from None
        if len(cfg.sizes) < 2 or min(cfg.sizes) < 1:
            raise CnnlabError(f"--sizes needs at least two positive sizes, got '{args.sizes}'")
    if args.seeds is not None:
        if args.seeds < 2:
            raise CnnlabError("--seeds must be at least 2 (a standard deviation needs two runs)")
        cfg.seeds = args.seeds
    cfg.device = args.device
    for key in ("source_steps", "target_steps", "threads"):
        value = getattr(args, key)
        if value is not None:
            if value < (0 if key == "threads" else 1):
                raise CnnlabError(f"--{key.replace('_', '-')} must be positive, got {value}")
            setattr(cfg, key, value)
    argv = "cnnlab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else None
    te.run_experiment(cfg, args.out, argv=argv or "cnnlab reproduce transfer")
    return 0
