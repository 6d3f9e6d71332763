"""`transfer`: small similar data -> a linear classifier on a pretrained net; more data -> fine-tune more layers,
at about 0.1x the rate for the upper layers and 0.01x for the lower (the lecture, seed 004; REFERENCES.md
section 7 "Transfer").

Source task: the first half of the classes, many images each. Target task: the other half, with N images per
class for each N in `sizes`. Per seed, one source trial, then for each N four target trials trained from that
seed's source network: from scratch, linear probe (`freeze = "backbone"`), fine-tune with discriminative rates
(`lr_mult = "head=1,stages=0.1,stem=0.01"`) and full fine-tune. Every target trial gets the same budget of
`target_steps` steps, so the comparison is about data and initialization, not compute. Each trial is a run of
the training engine: the target trials' `weights` is the source trial's run directory (Arm.weights_from), their
data one file per N (Arm.data, written by `datasets`).

When both tasks have the same class count (CIFAR-10: 5 and 5) the source head is kept as the starting point of
the target's head (cnnlab.weights.load_into replaces a head only when the counts differ): every pretrained arm
starts from the same weights, and the linear probe still trains one linear layer on frozen features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.experiments.base import Arm, Experiment, Setup
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare

METHODS = ("scratch", "linear", "discriminative", "full")
LABELS = {
    "scratch": "from scratch",
    "linear": "linear probe (frozen backbone)",
    "discriminative": "fine-tune, discriminative LR",
    "full": "full fine-tune",
}
DISC_MULT = "head=1,stages=0.1,stem=0.01"  # the lecture's 0.1x for the upper layers, 0.01x for the lower
SETTINGS = {"scratch": {}, "linear": {"freeze": "backbone"}, "discriminative": {"lr_mult": DISC_MULT}, "full": {}}


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x (1 source + 3 sizes x 4 methods) = 39 trials, projected at about 13 minutes on 2 busy
    # CPU cores with resnet20 (1 thread, about 190 training images/s), from single trials timed at this size: the
    # source's 200 x 64 images about 75 s per seed; a target trial's 64 x 32 about 10 s of training (the linear
    # probe, with no backward pass through the backbone, about 3 s) plus, at 10 per class, one epoch per step,
    # each with its val pass and checkpoint (about 0.25 s each): that overhead is why the budget is not larger.
    model: str = "resnet20"
    # The pool (data.npz) both tasks are cut from: 1,200 per class holds the largest target size plus its val.
    train_images: int = 12_000
    test_images: int = 1_000  # 100 per class: 500 test images per task
    sizes: tuple[int, ...] = (10, 100, 1000)  # target training images per class
    source_per_class: int = 1_000  # of which val_fraction is carved as the source's val (picks its checkpoint)
    # The target's val (picks the checkpoint), disjoint from its training images and the same for every size:
    # carving val_fraction out of 10 images per class would leave one image per class to choose with.
    val_per_class: int = 20
    source_steps: int = 200  # at batch_size: about 2.8 epochs of the 4,500 source training images
    # Every target trial, whatever N: the fixed budget (2,048 images: 41 epochs at 10 per class, 0.4 at 1,000).
    target_steps: int = 64
    target_batch: int = 32
    epochs: int = 1  # not used: every trial's length is in steps (source_steps, target_steps)
    batch_size: int = 64  # the source's
    lr: float = 0.05  # both tasks (cosine); the lr_mult of the discriminative arm scales it per part
    weight_decay: float = 5e-4
    threads: int = 1  # on a loaded 2-core machine, 2 torch threads measured about 3x slower than 1


def _check(cfg: Config) -> None:
    if len(cfg.sizes) < 2 or min(cfg.sizes) < 1 or list(cfg.sizes) != sorted(set(cfg.sizes)):
        raise CnnlabError(f"config: sizes needs two or more increasing positive sizes, got {list(cfg.sizes)}")
    for key in ("source_per_class", "val_per_class", "source_steps", "target_steps", "target_batch"):
        if getattr(cfg, key) < 1:
            raise CnnlabError(f"config: {key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.epochs != 1:
        raise CnnlabError("config: transfer counts steps, not epochs: set source_steps and target_steps instead")


def datasets(cfg: Config, pool: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The source task and one target task per size, cut from the experiment's subset (data.npz's arrays).

    Per class, one fixed permutation: the source takes its first `source_per_class`; a target class gives its
    first `val_per_class` to val and the next N to training, so the sizes are nested (100 holds the 10).
    Each task is tested on the test images of its own classes, relabelled 0..k-1."""
    _check(cfg)
    names = [str(c) for c in pool["classes"]]
    k, half = len(names), len(names) // 2
    source, target = list(range(half)), list(range(half, k))
    y, y_test = pool["y_train"], pool["y_test"]
    rng = np.random.default_rng(0)
    order = [rng.permutation(np.flatnonzero(y == c)) for c in range(k)]
    have = min(len(order[c]) for c in range(k))
    need = max(cfg.source_per_class, cfg.val_per_class + max(cfg.sizes))
    if have < need:
        raise CnnlabError(
            f"transfer: the subset has {have} training images in some class, it needs {need} (source_per_class "
            f"{cfg.source_per_class}; val_per_class + the largest size {cfg.val_per_class + max(cfg.sizes)}); "
            "raise train_images (0: all) or lower them"
        )
    if min(cfg.sizes) * len(target) < cfg.target_batch:
        raise CnnlabError(f"transfer: {min(cfg.sizes)} images x {len(target)} classes is less than one target batch "
                          f"({cfg.target_batch}); lower target_batch or raise the smallest size")  # fmt: skip
    if cfg.source_per_class * len(source) * (1 - cfg.val_fraction) < cfg.batch_size:
        raise CnnlabError(f"transfer: the source's training images are less than one batch ({cfg.batch_size})")

    def task(classes: list[int], train: list[np.ndarray], val: list[np.ndarray] | None = None) -> dict[str, Any]:
        relabel = np.full(k, -1, dtype=np.int64)
        relabel[classes] = np.arange(len(classes))
        tr = np.sort(np.concatenate(train))
        te = np.flatnonzero(np.isin(y_test, classes))
        out = {"x_train": pool["x_train"][tr], "y_train": relabel[y[tr]]}
        if val is not None:
            va = np.sort(np.concatenate(val))
            out |= {"x_val": pool["x_train"][va], "y_val": relabel[y[va]]}
        return out | {
            "x_test": pool["x_test"][te],
            "y_test": relabel[y_test[te]],
            "classes": np.array([names[c] for c in classes]),
        }

    files = {"source": task(source, [order[c][: cfg.source_per_class] for c in source])}
    v = cfg.val_per_class
    val = [order[c][:v] for c in target]
    for n in cfg.sizes:
        files[f"target{n}"] = task(target, [order[c][v : v + n] for c in target], val)
    return files


def _arms(cfg: Config) -> list[Arm]:
    _check(cfg)
    arms = [Arm("source", "source task (pretraining)", cfg.model, recipe={"iterations": cfg.source_steps},
                data="source")]  # fmt: skip
    budget = {"iterations": cfg.target_steps, "batch_size": cfg.target_batch}
    for n in cfg.sizes:
        arms += [
            Arm(f"{m}{n}", f"{LABELS[m]}, {n}/class", cfg.model, recipe={**budget, **SETTINGS[m]},
                data=f"target{n}", weights_from="" if m == "scratch" else "source")
            for m in METHODS
        ]  # fmt: skip
    return arms


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    """The old runner's verdicts, paired over seeds: at the smallest size the linear probe beats each of the
    other three (it "won"); at the largest, fine-tuning beats the linear probe (a fine-tune "won"); and the
    pretrained start itself: full fine-tuning and scratch differ only in their initial weights."""
    p, e = published("transfer"), "test_error"
    lo, hi = min(cfg.sizes), max(cfg.sizes)
    return [
        compare(r, "small_linear_scratch", f"at {lo}/class, the linear probe beats training from scratch", e,
                f"linear{lo}", f"scratch{lo}", p["small_data"]),
        compare(r, "small_linear_discriminative", f"at {lo}/class, the linear probe beats discriminative "
                "fine-tuning", e, f"linear{lo}", f"discriminative{lo}", p["small_data"]),
        compare(r, "small_linear_full", f"at {lo}/class, the linear probe beats full fine-tuning", e,
                f"linear{lo}", f"full{lo}", p["small_data"]),
        compare(r, "small_pretrained", f"at {lo}/class, full fine-tuning from the source beats the same training "
                "from scratch", e, f"full{lo}", f"scratch{lo}", p["pretrained"]),
        compare(r, "large_discriminative", f"at {hi}/class, fine-tuning with discriminative rates beats the linear "
                "probe", e, f"discriminative{hi}", f"linear{hi}", p["more_data"]),
        compare(r, "large_full", f"at {hi}/class, full fine-tuning beats the linear probe", e, f"full{hi}",
                f"linear{hi}", p["more_data"]),
    ]  # fmt: skip


def table(cfg: Config, r: dict[str, Any]) -> dict[int, dict[str, dict[str, float]]]:
    """{N: {method: target test accuracy mean, std (0 for one seed) and runs}} from the arms' summaries."""
    out: dict[int, dict[str, dict[str, float]]] = {}
    for n in cfg.sizes:
        out[n] = {}
        for m in METHODS:
            s = r["arms"][f"{m}{n}"]["test_error"]
            out[n][m] = {"mean": 1.0 - s["mean"], "std": s["std"] or 0.0, "runs": s["n"]}
    return out


def report(cfg: Config, r: dict[str, Any], out: Path) -> list[str]:
    """The old table (method x size, best in bold) and transfer.png, from the arms' numbers."""
    files = r["data"]["datasets"]
    src, tgt = files["source"], files[f"target{cfg.sizes[0]}"]
    t = table(cfg, r)
    plot(t, out / "transfer.png", f"{cfg.model}: {len(src['classes'])}-class source -> {len(tgt['classes'])}-class "
         "target")  # fmt: skip
    rows = ["| method | " + " | ".join(f"{n}/class" for n in cfg.sizes) + " |", "|---|" + "---:|" * len(cfg.sizes)]
    for m in METHODS:
        cells = []
        for n in cfg.sizes:
            v = t[n][m]
            cell = f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}"
            cells.append(f"**{cell}**" if v is max(t[n].values(), key=lambda x: x["mean"]) else cell)
        rows.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    acc = 1.0 - r["arms"]["source"]["test_error"]["mean"]
    return [
        "## Target test accuracy (%) by images per class",
        "",
        f"Source task: {len(src['classes'])} classes ({', '.join(src['classes'])}), {cfg.source_per_class} images "
        f"each ({src['train_images']} in all, {100 * cfg.val_fraction:.0f}% held out as val), {cfg.source_steps} "
        f"steps of {cfg.batch_size}; {100 * acc:.1f}% test accuracy on its {src['test_images']} test images. "
        f"Target task: the other {len(tgt['classes'])} classes ({', '.join(tgt['classes'])}), N training images "
        f"per class plus {cfg.val_per_class} val, every trial {cfg.target_steps} steps of {cfg.target_batch}; "
        f"tested on the {tgt['test_images']} test images of those classes. Discriminative rates `{DISC_MULT}`. "
        "Mean ± sample std over seeds (each seed: its own source network, head init, data order and augmentation; "
        "the images of each N are fixed). Best per column in bold. The arms' table above gives the same numbers "
        "as errors; its source row is on the source task.",
        "",
        *rows,
        "",
        "![target test accuracy vs images per class](transfer.png)",
        "",
    ]


def plot(table: dict[int, dict[str, dict[str, float]]], path: Path, title: str) -> None:
    """Accuracy against images per class (log axis), one line per method with its std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from cnnlab.fileio import atomic_path

    sizes = sorted(table)
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in METHODS:
        pts = [(n, table[n][m]) for n in sizes if m in table[n]]
        ax.errorbar([n for n, _ in pts], [100 * v["mean"] for _, v in pts], yerr=[100 * v["std"] for _, v in pts],
                    marker="o", capsize=3, label=LABELS[m])  # fmt: skip
    ax.set_xscale("log")
    # Ticks at the sizes that were run, as plain numbers: log-scale defaults read "6x10^0" and "2x10^1".
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("target training images per class")
    ax.set_ylabel("target test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


EXPERIMENT = Experiment(
    name="transfer",
    claim="small similar data: a linear probe on a pretrained net; more data: fine-tune (0.1x/0.01x rates)",
    source="the lecture, seed 004 (REFERENCES.md section 7, Transfer)",
    config=Config,
    # 2 seeds x (1 + 2 x 4) = 18 trials of a few steps each, in about 40 s: the numbers mean little.
    quick={"train_images": 600, "test_images": 300, "seeds": 2, "sizes": (5, 20), "source_per_class": 60,
           "val_per_class": 10, "source_steps": 12, "batch_size": 32, "target_steps": 4, "target_batch": 16},
    # A GPU's size: all of CIFAR-10 (5,000 per class), a longer source run and target budget.
    paper={"train_images": 0, "test_images": 0, "seeds": 5, "source_per_class": 4_000, "source_steps": 20_000,
           "batch_size": 128, "target_steps": 1_000},
    arms=_arms,
    judge=judge,
    needs_channels=None,  # the claim is not about CIFAR-10: any images with two tasks of two classes or more
    min_classes=4,
    datasets=datasets,
    report=report,
)  # fmt: skip
