"""`cnnlab train MODEL --data SPEC [--recipe R] [--set key=value ...]`, or `cnnlab train --resume RUN_DIR`."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

HELP = "train a zoo model on a dataset (recipes, exact resume, DDP via torchrun)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="a registered model name (see `cnnlab models`)")
    p.add_argument("--data", help="dataset spec: shapes[:k=v,...], npz:PATH, folder:PATH, cifar10:PATH, mnist:PATH")
    p.add_argument("--recipe", help="a packaged recipe name (resnet_cifar, alexnet2012, ...) or a .toml file")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field"
    )
    p.add_argument("--epochs", type=int, help="shortcut for --set epochs=N")
    p.add_argument("--batch-size", type=int, help="shortcut for --set batch_size=N (the global batch)")
    p.add_argument("--lr", type=float, help="shortcut for --set lr=X")
    p.add_argument("--out", help="run directory (default runs/<timestamp>-<model>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run exactly where it stopped")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 (default auto)")
    p.add_argument("--nproc", type=int, default=0, help="launch N processes with torchrun (DDP)")
    p.add_argument("--max-restarts", type=int, default=0, help="with --nproc: torchrun's --max-restarts")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _relaunch_argv(args: argparse.Namespace) -> list[str]:
    argv = ["train"]
    if args.model:
        argv.append(args.model)
    for flag, value in (
        ("--data", args.data),
        ("--recipe", args.recipe),
        ("--epochs", args.epochs),
        ("--batch-size", args.batch_size),
        ("--lr", args.lr),
        ("--out", args.out),
        ("--resume", args.resume),
        ("--device", args.device),
    ):
        if value is not None:
            argv += [flag, str(value)]
    for item in args.overrides:
        argv += ["--set", item]
    if args.no_progress:
        argv.append("--no-progress")
    return argv


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.train.recipe import load_recipe
    from cnnlab.train.rundir import default_run_dir

    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from cnnlab.train import ddp

        argv = _relaunch_argv(args)
        if not args.resume and not args.out:  # every process must agree on one run directory
            argv += ["--out", str(default_run_dir(args.model or "model"))]
        return ddp.launch(args.nproc, argv, max_restarts=args.max_restarts)

    from cnnlab.train.loop import train

    resume = args.resume
    restarted = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"
    if resume is None and restarted and args.out and (Path(args.out) / "run.json").is_file():
        # torchrun restarted the workers after a failure: continue the run instead of starting it again.
        resume = args.out
    if resume is not None:
        given = [args.model, args.data, args.recipe, args.overrides, args.epochs, args.lr, args.batch_size]
        if args.resume is not None and any(given):
            raise CnnlabError("--resume takes the model, data and recipe from the run directory; drop the others")
        from cnnlab.train.rundir import read_run

        recipe, _ = read_run(Path(resume))
        if args.no_progress:
            recipe = recipe.replace(progress=False)
        result = train(recipe, resume=resume, device=args.device)
    else:
        fields = {}
        if args.model:
            fields["model"] = args.model
        if args.data:
            fields["data"] = args.data
        for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr)):
            if value is not None:
                fields[key] = value
        if args.no_progress:
            fields["progress"] = False
        recipe = load_recipe(args.recipe, args.overrides, **fields)
        if not recipe.model:
            raise CnnlabError("no model: cnnlab train MODEL --data SPEC (or set `model` in the recipe)")
        result = train(recipe, out=args.out, device=args.device)
    if result.status == "interrupted":
        return 128 + int(signal.SIGTERM)
    return 0
