"""`cnnlab main`: the job `make run` runs.

Trains ResNet-20 on the embedded `shapes` set with the `main` recipe (configs/main.toml, sized for under
3 minutes on 2 CPU cores, data generation included), then prints the test accuracy, the per-class accuracy,
the model's complexity and where the run, the checkpoint and the plots are.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

NAME = "main"
HELP = "the main job that `make run` runs: train ResNet-20 on the embedded shapes set and report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run directory (default runs/<timestamp>-resnet20)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def complexity(model_name: str, image_shape: tuple[int, int, int], num_classes: int) -> str:
    """Parameters, and MACs when the analyzer (cnnlab.analysis) is installed."""
    from cnnlab.registry import create_model

    model = create_model(model_name, num_classes=num_classes, in_chans=image_shape[0])
    params = sum(p.numel() for p in model.parameters())
    text = f"{params:,} parameters"
    try:
        from cnnlab.analysis import analyze
    except ImportError:  # the analyzer is optional here: params alone still describe the model
        return text
    try:
        report = analyze(model, image_shape)
    except Exception as e:  # noqa: BLE001 - a summary line must never sink the job
        return f"{text} (MACs unavailable: {str(e).splitlines()[0]})"
    return f"{text}, {report.total_macs / 1e6:,.1f}M MACs per {'x'.join(map(str, image_shape))} image"


def _threads_for_load() -> int | None:
    """1 when the cores are already busy, else None (torch's default: one thread per core).

    On a busy machine OpenMP threads spin waiting for peers the scheduler has parked: measured here, 2 threads
    on 2 cores at load 5 trained at 28 img/s where 1 thread did 100-200 img/s.
    """
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = os.cpu_count() or 1
    return 1 if cores > 1 and load >= cores - 0.5 else None


# The training loop's last line, "test: top-1 ..% top-5 ..% (N images)" ("val: ..." without a test split).
_LOOP_TEST_LINE = re.compile(r"^(test|val): top-1 ")


def _print_but_test_line(line: str) -> None:
    """The loop's log, less its test-accuracy line: the summary below prints the same figures (the same best
    checkpoint on the same split) with the per-class break-down, and one figure should be printed once."""
    if not _LOOP_TEST_LINE.match(line):
        print(line)


def run(args: argparse.Namespace) -> int:
    from cnnlab.fileio import write_json
    from cnnlab.train.evaluate import evaluate, plot_confusion
    from cnnlab.train.loop import train
    from cnnlab.train.recipe import load_recipe
    from cnnlab.train.rundir import default_run_dir

    t0 = time.perf_counter()
    fields: dict = {"progress": False} if args.no_progress else {}
    if (threads := _threads_for_load()) is not None:
        fields["threads"] = threads
    recipe = load_recipe("main", args.overrides, **fields)
    out = Path(args.out) if args.out else default_run_dir(recipe.model)
    print(f"cnnlab main: {recipe.model} on {recipe.data}, {recipe.epochs} epochs (recipe configs/main.toml)")
    result = train(recipe, out=out, log=_print_but_test_line)
    if result.status != "finished":
        return 130
    run_dir = result.run_dir
    report = evaluate([run_dir], split="test")
    write_json(run_dir / "eval-test.json", report)
    confusion = plot_confusion(report, run_dir / "confusion.png")  # titled with the model, data and TTA
    summary = result.summary
    x_shape = _image_shape(run_dir)
    wall = time.perf_counter() - t0

    print()
    print(f"test accuracy: top-1 {100 * report['top1']:.2f}%  top-5 {100 * report['top5']:.2f}%  "
          f"({report['n']} images)")  # fmt: skip
    print("per-class accuracy:")
    for name, acc in report["per_class"].items():
        print(f"  {name:<12} {'-' if acc is None else f'{100 * acc:6.2f}%'}")
    print(f"model: {recipe.model}: {complexity(recipe.model, x_shape, len(report['classes']))}")
    print(f"training: {summary['epochs']} epochs in {summary['train_seconds']:.1f} s "
          f"({summary['images_per_second']:,.0f} img/s); whole job {wall:.1f} s")  # fmt: skip
    print(f"run directory: {run_dir}")
    print(f"checkpoint:    {summary['checkpoints']['best'] or summary['checkpoints']['last']}")
    print(f"plots:         {run_dir / 'curves.png'}, {confusion}")
    return 0


def _image_shape(run_dir: Path) -> tuple[int, int, int]:
    import json

    info = json.loads((run_dir / "run.json").read_text())
    return (int(info["in_chans"]), int(info["image_size"]), int(info["image_size"]))
