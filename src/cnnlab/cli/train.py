"""`cnnlab train MODEL --data SPEC [--recipe R] [--set key=value ...]`, or `cnnlab train --resume RUN_DIR`.

Transfer learning: `--weights SOURCE` (run directory, weights file, torchvision:NAME), `--freeze`, `--lr-mult`,
`--unfreeze-at`: shortcuts for the recipe fields of the same names, so recipe.toml records them and `--resume`
and torchrun restarts rebuild the same frozen model and parameter groups.
"""

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
    p.add_argument("--seed", type=int, help="shortcut for --set seed=N")
    p.add_argument(
        "--strict-size",
        action="store_true",
        help="refuse data smaller than the model's minimum input (default: resize it up to that size, and say so)",
    )
    p.add_argument("--out", help="run directory (default runs/<timestamp>-<model>); must not hold another run")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue this run exactly where it stopped (--data SPEC: the same data, moved elsewhere)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    p.add_argument("--nproc", type=int, help="launch N processes with torchrun (DDP); 1 is a single process")
    p.add_argument("--max-restarts", type=int, default=0, help="with --nproc: torchrun's --max-restarts")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard event files to RUN_DIR/tensorboard (shortcut for --set tensorboard=true)",
    )
    t = p.add_argument_group("transfer learning")
    t.add_argument(
        "--weights",
        metavar="SOURCE",
        help="start from: a cnnlab run directory or checkpoint, a torchvision/timm state_dict file (.pth, .pt, "
        ".safetensors), or torchvision:NAME; a different class count gets a fresh head",
    )
    t.add_argument(
        "--freeze", default="none", help="none (default), backbone, or stages:K (stem + the K lowest stages)"
    )
    t.add_argument(
        "--lr-mult", metavar="GROUP=X,...", help="learning-rate multipliers, e.g. head=1,stages=0.1,stem=0.01"
    )
    t.add_argument("--unfreeze-at", type=int, metavar="EPOCH", help="unfreeze the frozen parts after this many epochs")


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
        ("--seed", args.seed),
        ("--out", args.out),
        ("--resume", args.resume),
        ("--device", args.device),
        ("--weights", args.weights),
        ("--freeze", None if args.freeze == "none" else args.freeze),
        ("--lr-mult", args.lr_mult),
        ("--unfreeze-at", args.unfreeze_at),
    ):
        if value is not None:
            argv += [flag, str(value)]
    for item in args.overrides:
        argv += ["--set", item]
    if args.no_progress:
        argv.append("--no-progress")
    if args.strict_size:
        argv.append("--strict-size")
    if args.tensorboard:
        argv.append("--tensorboard")
    return argv


def _weights_source(weights: str) -> str:
    if not weights.startswith("torchvision:") and Path(weights).exists():
        return str(Path(weights).resolve())  # recorded for --resume, which may run from another directory
    return weights


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def new_recipe(args: argparse.Namespace, log=print):  # noqa: ANN001, ANN201
    """The recipe of a new run: the --recipe file (else the model family's defaults) <- flags <- --set.

    A length given on the command line wins over the recipe's, and its milestones move with it (said in one line).
    """
    from cnnlab.errors import CnnlabError
    from cnnlab.train.recipe import (
        family_defaults,
        from_dict,
        merge_override,
        parse_override,
        read_recipe_file,
        scale_length,
    )

    changes: dict = {}
    for key, value in (
        ("model", args.model),
        ("data", args.data),
        ("epochs", args.epochs),
        ("batch_size", args.batch_size),
        ("lr", args.lr),
        ("seed", args.seed),
    ):
        if value is not None:
            changes[key] = value
    if args.no_progress:
        changes["progress"] = False
    if args.strict_size:
        changes["strict_size"] = True
    if args.tensorboard:
        changes["tensorboard"] = True
    if args.weights:
        changes["weights"] = _weights_source(args.weights)
    if args.freeze != "none":
        changes["freeze"] = args.freeze
    if args.lr_mult:
        changes["lr_mult"] = args.lr_mult
    if args.unfreeze_at is not None:
        if args.unfreeze_at < 1:
            raise CnnlabError(f"--unfreeze-at must be an epoch >= 1, got {args.unfreeze_at}")
        changes["unfreeze_at"] = args.unfreeze_at
    dotted = [parse_override(item) for item in args.overrides]
    changes.update((k, v) for k, v in dotted if "." not in k)
    notes: list[str] = []
    if args.recipe:
        base = read_recipe_file(args.recipe)
    else:
        model = changes.get("model")
        if not model:
            raise CnnlabError("no model: cnnlab train MODEL --data SPEC (or set `model` in a --recipe file)")
        base, path = family_defaults(model)
        if path is not None:
            notes.append(f"recipe: the {path.stem} family's defaults ({path.name}; --recipe R for another)")
    for key, value in dotted:
        if "." in key:
            merge_override(changes, key, value, base)
    base_recipe = from_dict(base)
    changes, note = scale_length(base_recipe, changes)
    if note:
        notes.append(f"recipe: {note}")
    recipe = from_dict({**base, **changes})
    if not recipe.model:
        raise CnnlabError("no model: cnnlab train MODEL --data SPEC (or set `model` in the recipe)")
    if recipe.tensorboard:  # a missing optional package is refused here too, before the notes (and torchrun)
        from cnnlab.train.tensorboard import require

        require()
    for line in notes:  # said once the recipe is valid: a refused command prints its one error line only
        log(line)
    return recipe


def _check_nproc(args: argparse.Namespace) -> None:
    from cnnlab.errors import CnnlabError

    if args.nproc is not None and args.nproc < 1:
        raise CnnlabError(f"--nproc must be at least 1 (the number of processes), got {args.nproc}")
    if args.max_restarts < 0:
        raise CnnlabError(f"--max-restarts must be >= 0, got {args.max_restarts}")


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.train.ddp import pick_device
    from cnnlab.train.rundir import check_new_run_dir, default_run_dir

    _check_nproc(args)
    pick_device(args.device)  # an unknown device fails here, before any data is read or process started
    if args.resume is not None:
        given = [args.model, args.recipe, args.overrides, args.epochs, args.lr, args.batch_size, args.seed]
        given += [args.weights, args.freeze != "none", args.lr_mult, args.unfreeze_at is not None, args.strict_size]
        given += [args.tensorboard]  # a recipe field: the run keeps the choice it started with
        if any(given):
            raise CnnlabError(
                "--resume takes the model and recipe from the run directory; drop the others (--data may point "
                "to the same data moved elsewhere)"
            )
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from cnnlab.train import ddp

        argv = _relaunch_argv(args)
        if not args.resume:
            # Checked here, before torchrun starts: a bad recipe or a taken --out is one line, not N tracebacks.
            recipe = new_recipe(args, log=lambda s: None)  # (it also refuses tensorboard=true without the package)
            if args.out:
                check_new_run_dir(Path(args.out))
            else:  # every process must agree on one run directory
                argv += ["--out", str(default_run_dir(recipe.model))]
        return ddp.launch(args.nproc, argv, max_restarts=args.max_restarts)

    from cnnlab.train.loop import train

    resume = args.resume
    restarted = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"
    if resume is None and restarted and args.out and (Path(args.out) / "run.json").is_file():
        # torchrun restarted the workers after a failure: continue the run instead of starting it again.
        resume = args.out
    log = print if _is_main() else (lambda s: None)
    if resume is not None:
        from cnnlab.train.data_adapter import resolve_data_spec
        from cnnlab.train.rundir import read_run

        recipe, _ = read_run(Path(resume))
        if args.no_progress:
            recipe = recipe.replace(progress=False)
        if args.data and args.resume is not None:
            recipe = recipe.replace(data=resolve_data_spec(args.data))
        result = train(recipe, resume=resume, device=args.device)
    else:
        result = train(new_recipe(args, log=log), out=args.out, device=args.device)
    if result.status == "interrupted":
        # The shell's convention: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).
        return 128 + int(result.signal or signal.SIGTERM)
    return 0
