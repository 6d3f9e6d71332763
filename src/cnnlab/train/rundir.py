"""The run directory: everything needed to understand, repeat or resume a run (DESIGN.md rule 10).

recipe.toml     the full recipe (every field)
run.json        model, data spec, classes, input shape, normalization: what --resume and eval need
env.json        git SHA, versions, device, threads
metrics.csv     one row per epoch
curves.png      loss and accuracy per epoch
summary.json    test_top1, test_top5, epochs, train_seconds, images_per_second, checkpoints
checkpoints/    see checkpoint.py
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from cnnlab import machine
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, write_json, write_text
from cnnlab.train.recipe import Recipe, load_recipe


def default_run_dir(model: str, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{model}"
    n = 1
    while path.exists():  # two runs started in the same second
        n += 1
        path = Path(root) / f"{stamp}-{model}-{n}"
    return path


RUN_FILES = ("run.json", "recipe.toml", "checkpoints")  # any of these: the directory holds a run
LOCK_FILE = ".lock"


def check_new_run_dir(run: Path) -> None:
    """Refuse to start a run in a directory that is a file or already holds a run (its data would be mixed)."""
    if run.exists() and not run.is_dir():
        raise CnnlabError(f"--out {run} is a file, not a directory; choose another --out")
    if run.is_dir() and any((run / name).exists() for name in RUN_FILES):
        raise CnnlabError(
            f"{run} already holds a run; continue it with `cnnlab train --resume {run}`, or choose another --out"
        )


class RunLock:
    """An exclusive lock on a run directory while a process trains in it (released when the process dies).

    Two trainings into one directory would interleave their checkpoints and metrics; the second is refused.
    """

    def __init__(self, run: Path) -> None:
        self.run = run
        self._f: Any = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; the run.json check still refuses a finished run
            return self
        self.run.mkdir(parents=True, exist_ok=True)
        f = open(self.run / LOCK_FILE, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise CnnlabError(
                f"{self.run} is in use by another cnnlab train ({holder}); wait for it or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._f = f
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._f is not None:
            self._f.close()  # closing releases the lock
            self._f = None


def git_sha() -> str | None:
    repo = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    import numpy

    import cnnlab

    env: dict[str, Any] = {
        "git_sha": git_sha(),
        "cnnlab": cnnlab.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **machine.describe(),  # the CPU's model and speed flags: machines vary from one session to the next
        "world_size": world_size,
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def write_start(run: Path, recipe: Recipe, run_info: dict[str, Any], env: dict[str, Any]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / "recipe.toml", "# written by cnnlab train; `cnnlab train --resume` reads it\n" + recipe.to_toml())
    write_json(run / "run.json", run_info)
    write_json(run / "env.json", env)


def read_run(run: Path) -> tuple[Recipe, dict[str, Any]]:
    if not run.is_dir():
        raise CnnlabError(f"run directory not found: {run}")
    if not (run / "recipe.toml").is_file() or not (run / "run.json").is_file():
        raise CnnlabError(f"{run} is not a cnnlab run directory (no recipe.toml/run.json)")
    recipe = load_recipe(run / "recipe.toml")
    legacy = run / "transfer.json"  # runs before the transfer settings were recipe fields kept them here
    if legacy.is_file():
        t = json.loads(legacy.read_text())
        recipe = recipe.replace(
            weights=t.get("weights") or "",
            freeze=t.get("freeze") or "none",
            lr_mult=t.get("lr_mult") or "",
            unfreeze_at=t.get("unfreeze_at") or 0,
        )
    return recipe, json.loads((run / "run.json").read_text())


METRIC_FIELDS = (
    "epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "img_per_s",
    "clean_train_loss", "clean_train_acc",  # empty unless recipe.train_eval_images > 0
    # empty unless the recipe emulates a number format (cnnlab.precision.emulate.COUNTERS, and the loss scale)
    "updates_nonzero", "updates_lost", "grads_nonzero", "grads_flushed", "overflows", "saturations",
    "skipped_steps", "loss_scale",
)  # fmt: skip


def write_metrics(run: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_FIELDS})
    write_text(run / "metrics.csv", buf.getvalue())


def plot_curves(run: Path, rows: list[dict[str, Any]], title: str = "") -> Path | None:
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in rows]
    # constrained layout keeps the y labels inside the figure, whatever the width of the tick labels
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    ax1.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    if any(r.get("val_loss") is not None for r in rows):
        ax1.plot(ep, [r.get("val_loss") for r in rows], "o-", label="val")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(ep, [100 * r["train_acc"] for r in rows], "o-", label="train")
    if any(r.get("val_acc") is not None for r in rows):
        ax2.plot(ep, [None if r.get("val_acc") is None else 100 * r["val_acc"] for r in rows], "o-", label="val")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    for ax in (ax1, ax2):
        # Whole epochs only (a 1-epoch run otherwise gets 0.96 ... 1.04), and half an epoch of room each side.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(min(ep) - 0.5, max(ep) + 0.5)
    if title:
        fig.suptitle(title)
    path = run / "curves.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
