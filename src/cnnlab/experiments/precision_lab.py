"""What the numerical-precision experiments (rounding, half, bfloat16, binary) share: a second dataset (MNIST)
beside CIFAR-10, the emulation counters read back from each trial, and their tables and figures.

Two datasets. `data` is CIFAR-10, found and cut into DIR/data.npz as in every experiment (`--data`); `mnist` is a
dataset spec for MNIST (the name `mnist` is looked up in CNNLAB_MNIST, cnnlab.experiments.data.resolve), which
the `datasets` hook cuts into DIR/data-mnist.npz: the same stratified subset sizes (train_images, test_images;
seeds 0 and 1), its 28 x 28 digits centred in a 32 x 32 field as LeCun et al. 1998 (Sec. III.A) feed LeNet-5.
Arms whose `data` is "mnist" train on it, the others on CIFAR-10; `tasks` says which of the two an experiment
runs (without "mnist", MNIST is not read at all).

The counters are the emulator's (cnnlab.precision.emulate.COUNTERS), one row per epoch in each trial's
metrics.csv; `add_counters` sums them over the run into each trial's results: lost_updates (the share of nonzero
weight updates that left the stored weight unchanged), flushed_grads (the share of nonzero gradient elements
rounded to zero), saturations, overflows, skipped_steps and the final loss scale.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.experiments import stats
from cnnlab.experiments.base import Setup

TASKS = ("mnist", "cifar10")
TASK_LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
COUNTERS = (
    "updates_nonzero",
    "updates_lost",
    "grads_nonzero",
    "grads_flushed",
    "overflows",
    "saturations",
    "skipped_steps",
)  # fmt: skip  (cnnlab.precision.emulate.COUNTERS: metrics.csv's columns)
SIDE = 32  # LeNet-5's input: MNIST's 28 x 28 digits centred in it (LeCun et al. 1998, Sec. III.A)


@dataclass(frozen=True)
class TwoTasks(Setup):
    """A precision experiment's config: CIFAR-10 (`data`) and MNIST (`mnist`), the `tasks` it runs."""

    mnist: str = "mnist"  # a dataset spec; the name is looked up in CNNLAB_MNIST (--set mnist=npz:PATH)
    tasks: tuple[str, ...] = TASKS


def check_tasks(cfg: TwoTasks) -> None:
    tasks = list(cfg.tasks)
    if not tasks or len(set(tasks)) < len(tasks) or any(t not in TASKS for t in tasks):
        raise CnnlabError(f"config: tasks must name each of {', '.join(TASKS)} at most once, got {tasks}")


def arm_data(task: str) -> str:
    """An arm's `data`: the experiment's data.npz for CIFAR-10, data-mnist.npz for MNIST."""
    return "mnist" if task == "mnist" else ""


def mnist_dataset(cfg: TwoTasks, arrays: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `datasets` hook: MNIST's subset, padded to SIDE x SIDE, as {"mnist": arrays} (none without the task)."""
    if "mnist" not in cfg.tasks:
        return {}
    import numpy as np

    from cnnlab.data.dataset import load
    from cnnlab.experiments.data import _subset, resolve

    spec = resolve(cfg.mnist)
    train, test = load(spec, split="train", val_fraction=0.0), load(spec, split="test", val_fraction=0.0)
    k = len(train.classes)
    tr, te = _subset(train.y, cfg.train_images, k, seed=0), _subset(test.y, cfg.test_images, k, seed=1)
    if len(tr) * (1 - cfg.val_fraction) < cfg.batch_size:
        raise CnnlabError(f"{spec}: {len(tr)} training images leave less than one batch of {cfg.batch_size}")

    def centred(x: Any) -> Any:  # (N, C, H, W) uint8 -> (N, SIDE, SIDE, C), zero (background) around it
        x = x.permute(0, 2, 3, 1).numpy()
        dh, dw = max(0, SIDE - x.shape[1]), max(0, SIDE - x.shape[2])
        return np.pad(x, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))

    return {
        "mnist": {
            "x_train": centred(train.x[tr]),
            "y_train": train.y[tr].numpy().astype(np.int64),
            "x_test": centred(test.x[te]),
            "y_test": test.y[te].numpy().astype(np.int64),
            "classes": np.array(list(train.classes)),
        }
    }


def read_counters(run: Path) -> dict[str, Any]:
    """A trial's counters from its metrics.csv: per-epoch lists and run totals (empty cells, fp32 arms: 0)."""
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    per_epoch = {k: [int(float(r[k])) if r.get(k) not in (None, "") else 0 for r in rows] for k in COUNTERS}
    scales = [float(r["loss_scale"]) for r in rows if r.get("loss_scale") not in (None, "")]
    return {"per_epoch": per_epoch, "totals": {k: sum(v) for k, v in per_epoch.items()},
            "loss_scale": scales[-1] if scales else None}  # fmt: skip


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def add_counters(r: dict[str, Any], out: Path) -> dict[str, Any]:
    """Each trial's run totals and shares (lost_updates, flushed_grads), written into its results row."""
    for t in r["trials"]:
        c = read_counters(out / t["run_dir"])
        tot = c["totals"]
        t["counters"] = tot
        t["lost_updates"] = _share(tot["updates_lost"], tot["updates_nonzero"])
        t["flushed_grads"] = _share(tot["grads_flushed"], tot["grads_nonzero"])
        t["lost_updates_per_epoch"] = [_share(a, b) for a, b in zip(c["per_epoch"]["updates_lost"],
                                                                    c["per_epoch"]["updates_nonzero"])]  # fmt: skip
        t["flushed_grads_per_epoch"] = [_share(a, b) for a, b in zip(c["per_epoch"]["grads_flushed"],
                                                                     c["per_epoch"]["grads_nonzero"])]  # fmt: skip
        t["final_loss_scale"] = c["loss_scale"]
    return {"counters": "summed over each trial's epochs (metrics.csv); shares of the nonzero elements"}


def evaluate(cfg: Any, r: dict[str, Any], out: Path, device: str, log: Any) -> dict[str, Any]:
    """The `evaluate` hook of an experiment whose only extra measurement is the counters."""
    return add_counters(r, out)


def _cell(values: list[float], pct: bool = True) -> str:
    s = stats.mean_std(values)
    if not pct:  # a count: its mean, whole
        return f"{s['mean']:,.0f}"
    spread = "" if s["std"] is None else f" ± {100 * s['std']:.2f}"
    return f"{100 * s['mean']:.2f}{spread}"


def counters_table(r: dict[str, Any], arms: list[str]) -> list[str]:
    """Accuracy beside the counters, per arm (mean ± std over seeds; "-" where nothing is emulated)."""
    lines = ["| arm | test error % | lost updates % | flushed gradients % | saturations | overflows | skipped steps "
             "| final loss scale |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name in arms:
        mine = [t for t in r["trials"] if t["arm"] == name]
        error = _cell([t["test_error"] for t in mine])
        if not any(t["counters"]["updates_nonzero"] or t["counters"]["grads_nonzero"] for t in mine):
            lines.append(f"| {r['arms'][name]['label']} | {error} | - | - | - | - | - | - |")  # fp32: no counters
            continue
        scales = {t["final_loss_scale"] for t in mine} - {None}
        scale = ", ".join(f"{s:g}" for s in sorted(scales)) if scales else "-"
        sat, over, skip = (_cell([t["counters"][k] for t in mine], pct=False)
                           for k in ("saturations", "overflows", "skipped_steps"))  # fmt: skip
        lines.append(f"| {r['arms'][name]['label']} | {error} | {_cell([t['lost_updates'] for t in mine])} | "
                     f"{_cell([t['flushed_grads'] for t in mine])} | {sat} | {over} | {skip} | {scale} |")  # fmt: skip
    return [*lines, "", "Counters are summed over each trial's epochs; saturations, overflows and skipped steps are "
            "counts (means over seeds), the shares are of the nonzero elements (the emulator's, metrics.csv). A lost "
            "update is one step's: under stochastic rounding most small updates are lost in a given step and kept "
            "in expectation, so the accuracy, not this share, tells the roundings apart.", ""]  # fmt: skip


def curves_figure(r: dict[str, Any], out: Path, file: str, panels: list[tuple[str, list[str]]]) -> None:
    """One panel per (title, arms): each arm's held-out error per epoch, mean over seeds, min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from cnnlab.fileio import atomic_path

    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), sharey=True, squeeze=False)
    for ax, (title, names) in zip(axes.flat, panels):
        for name in names:
            mine = [t for t in r["trials"] if t["arm"] == name]
            curves = np.array([[np.nan if v is None else 100 * v for v in t["val_error"]] for t in mine], dtype=float)
            (line,) = ax.plot(mine[0]["epochs"], np.nanmean(curves, 0), label=r["arms"][name]["label"])
            if len(mine) > 1:
                ax.fill_between(mine[0]["epochs"], np.nanmin(curves, 0), np.nanmax(curves, 0),
                                color=line.get_color(), alpha=0.2)  # fmt: skip
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("held-out (val) error (%)", fontsize=8)
    fig.tight_layout()
    with atomic_path(out / file) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def counters_figure(r: dict[str, Any], out: Path, file: str, arms: list[str]) -> None:
    """Accuracy beside the counters: test error, lost updates and flushed gradients per arm (mean ± std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnlab.fileio import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    labels = [r["arms"][n]["label"] for n in arms]
    titles = ("test error (%)", "lost updates (% of nonzero)", "flushed gradients (% of nonzero)")
    for ax, key, title in zip(axes, ("test_error", "lost_updates", "flushed_grads"), titles):
        s = [stats.mean_std([100 * t[key] for t in r["trials"] if t["arm"] == n]) for n in arms]
        ax.bar(range(len(arms)), [x["mean"] for x in s], yerr=[x["std"] or 0.0 for x in s], capsize=3,
               color="#6a9fd8")  # fmt: skip
        ax.set_xticks(range(len(arms)), labels, fontsize=7, rotation=20, ha="right")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(out / file) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def data_line(r: dict[str, Any], cfg: TwoTasks) -> list[str]:
    """Where MNIST came from and how much of it (the report's header names only CIFAR-10's source)."""
    import os

    from cnnlab.experiments.data import MNIST_ENV

    d = r["data"].get("datasets", {}).get("mnist")
    if d is None:
        return []
    where = f"`{cfg.mnist}`" + (f" ({MNIST_ENV} = `{os.environ[MNIST_ENV]}` at the report)"
                                if cfg.mnist == "mnist" and os.environ.get(MNIST_ENV) else "")  # fmt: skip
    return [f"MNIST: {d['train_images']} training images (of which {100 * cfg.val_fraction:.0f}% held out as val) "
            f"and {d['test_images']} test images of {where}, sha256 {d['sha256'][:12]}..., centred in {SIDE} x "
            f"{SIDE}; the arms marked MNIST train on it, the others on CIFAR-10.", ""]  # fmt: skip
