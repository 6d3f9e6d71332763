"""`cnnlab train MODEL --data SPEC [--recipe R] [--set key=value ...]`, or `cnnlab train --resume RUN_DIR`.

Transfer learning: `--weights SOURCE` (run directory, weights file, torchvision:NAME), `--freeze`, `--lr-mult`,
`--unfreeze-at`. They are recorded in RUN_DIR/transfer.json, so `--resume` and torchrun restarts rebuild the
same frozen model and parameter groups.
"""

from __future__ import annotations

import argparse
import json
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
    return argv


def _settings(args: argparse.Namespace):  # noqa: ANN202
    from cnnlab.train.finetune import TransferSettings

    weights = args.weights
    if weights and not weights.startswith("torchvision:") and Path(weights).exists():
        weights = str(Path(weights).resolve())  # recorded for --resume, which may run from another directory
    return TransferSettings(weights, args.freeze, args.lr_mult, args.unfreeze_at)


def _transfer_model(recipe, settings, run_dir: Path, resuming: bool, log=print) -> dict:  # noqa: ANN001
    """Build the model, load the pretrained weights, freeze: the keyword arguments for loop.train."""
    from cnnlab.data.dataset import load
    from cnnlab.errors import CnnlabError
    from cnnlab.registry import create_model, get_entry
    from cnnlab.train.finetune import transfer_hooks
    from cnnlab.train.pretrained import load_pretrained, read_source

    settings.check()
    if not recipe.data:
        raise CnnlabError("no data given: pass --data SPEC (e.g. shapes, npz:path.npz) or set `data` in the recipe")
    train = load(recipe.data, split="train", size=recipe.image_size or None, val_fraction=recipe.val_fraction)
    model = create_model(recipe.model, num_classes=len(train.classes), in_chans=int(train.x.shape[1]))
    if settings.weights:
        has_checkpoint = resuming and any((run_dir / "checkpoints").glob("*.json"))
        if has_checkpoint:
            log(f"resume: weights come from the run's checkpoint, not {settings.weights}")
        else:
            state = read_source(settings.weights)
            for note in load_pretrained(model, get_entry(recipe.model).family, state, settings.weights):
                log(note)
    hooks = transfer_hooks(model, settings, recipe.lr, recipe.weight_decay, recipe.decay_norm_and_bias, log=log)
    return {"model": model, **hooks}


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.fileio import write_json
    from cnnlab.train.finetune import TRANSFER_FILE, TransferSettings
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
        given += [args.weights, args.freeze != "none", args.lr_mult, args.unfreeze_at is not None]
        if args.resume is not None and any(given):
            raise CnnlabError("--resume takes the model, data and recipe from the run directory; drop the others")
        from cnnlab.train.rundir import read_run

        recipe, _ = read_run(Path(resume))
        if args.no_progress:
            recipe = recipe.replace(progress=False)
        extra = {}
        recorded = Path(resume) / TRANSFER_FILE
        if recorded.is_file():
            settings = TransferSettings.from_dict(json.loads(recorded.read_text()))
            extra = _transfer_model(recipe, settings, Path(resume), resuming=True)
        result = train(recipe, resume=resume, device=args.device, **extra)
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
        settings = _settings(args)
        extra, out = {}, args.out
        if settings.active:
            out = Path(out) if out else default_run_dir(recipe.model)
            extra = _transfer_model(recipe, settings, out, resuming=False)
            if _is_main():
                write_json(out / TRANSFER_FILE, settings.to_dict())
        result = train(recipe, out=out, device=args.device, **extra)
    if result.status == "interrupted":
        return 128 + int(signal.SIGTERM)
    return 0
