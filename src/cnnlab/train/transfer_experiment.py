"""`cnnlab reproduce transfer`: does the lecture's transfer-learning advice hold on our data?

Source task: the first half of the classes (many images). Target task: the other half, with N images per class,
trained four ways from the same pretrained source network: from scratch, linear probe (frozen backbone),
fine-tune with discriminative learning rates, and full fine-tune. Every run gets the same fixed step budget, so
the comparison is about data and initialization, not compute.

The runs use a lean loop (no run directories, checkpoints or per-epoch evaluation) so that 36 runs fit in
15 minutes on two CPU cores; the freezing, parameter groups and head replacement are the same functions
`cnnlab train --weights/--freeze/--lr-mult` uses (cnnlab.train.finetune, cnnlab.train.pretrained).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError

METHODS = ("scratch", "linear", "discriminative", "full")
LABELS = {
    "scratch": "from scratch",
    "linear": "linear probe (frozen backbone)",
    "discriminative": "fine-tune, discriminative LR",
    "full": "full fine-tune",
}
DISC_MULT = "head=1,stages=0.1,stem=0.01"


@dataclass
class Config:
    data: str = "shapes:classes=12,size=24,train=24000,test=2400"
    model: str = "resnet20"
    sizes: tuple[int, ...] = (10, 100, 1000)  # target images per class
    seeds: int = 3
    source_per_class: int = 1000
    source_steps: int = 300
    target_steps: int = 100
    batch_size: int = 64  # source; target uses min(32, n)
    target_batch: int = 32
    lr: float = 0.05
    weight_decay: float = 5e-4
    test_per_class: int = 100
    threads: int = 1  # on a loaded 2-core machine, 2 threads measured ~3x slower than 1
    device: str = "auto"  # auto: CUDA when available
    extra: dict[str, Any] = field(default_factory=dict)


def quick_config(data: str | None = None) -> Config:
    """The CI size: seconds, not minutes; the numbers mean little."""
    c = Config(
        sizes=(5, 20), seeds=2, source_per_class=60, source_steps=25, target_steps=8, batch_size=32, test_per_class=20
    )
    c.data = data or "shapes:classes=12,size=16,train=480,test=240"
    c.target_batch = 16
    return c


# -- data ---------------------------------------------------------------------------------------------------


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W)
    y: torch.Tensor  # int64, 0..k-1
    classes: list[str]


def _take(x: torch.Tensor, y: torch.Tensor, classes: list[int], per_class: int, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c in classes:
        where = torch.nonzero(y == c).flatten()
        where = where[torch.randperm(len(where), generator=g)][:per_class]
        idx.append(where)
    i = torch.cat(idx)
    relabel = {c: k for k, c in enumerate(classes)}
    return x[i], torch.tensor([relabel[int(v)] for v in y[i]], dtype=torch.int64)


def load_tasks(cfg: Config) -> tuple[Split, Split, Split, dict[int, list[Split]], list[float], list[float]]:
    """(source train, source test, target test, {size: [target train per seed]}, mean, std)."""
    from cnnlab.data.dataset import load

    train = load(cfg.data, split="train", val_fraction=0.0)
    test = load(cfg.data, split="test", val_fraction=0.0)
    classes = list(train.classes)
    if len(classes) < 4:
        raise CnnlabError(
            f"reproduce transfer needs at least 4 classes (two tasks of 2+), {cfg.data} has {len(classes)}"
        )
    half = len(classes) // 2
    src_cls, tgt_cls = list(range(half)), list(range(half, len(classes)))
    counts = torch.bincount(train.y, minlength=len(classes))
    need = max(cfg.sizes)
    short = [classes[c] for c in tgt_cls if counts[c] < need]
    if short:
        raise CnnlabError(f"{cfg.data}: fewer than {need} training images in class(es) {', '.join(short)}")
    x, y = train.x, train.y
    source = Split(*_take(x, y, src_cls, cfg.source_per_class, seed=0), [classes[c] for c in src_cls])
    source_test = Split(*_take(test.x, test.y, src_cls, cfg.test_per_class, seed=0), source.classes)
    tx, ty = _take(test.x, test.y, tgt_cls, cfg.test_per_class, seed=0)
    target_test = Split(tx, ty, [classes[c] for c in tgt_cls])
    targets = {}
    for n in cfg.sizes:
        # Seed s draws its own subset (nested across sizes: the first n of one permutation per class).
        targets[n] = [Split(*_take(x, y, tgt_cls, n, seed=1000 + s), target_test.classes) for s in range(cfg.seeds)]
    return source, source_test, target_test, targets, list(train.mean), list(train.std)


def _augment(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and random crop after zero padding (the `flip,crop:4` of the recipes)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    c = x.shape[1]
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, c, h, w)
    xp = xp.gather(2, rows)
    return xp.gather(3, cols)


# -- one run ------------------------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    data: Split,
    steps: int,
    batch: int,
    lr: float,
    weight_decay: float,
    mean: list[float],
    std: list[float],
    seed: int,
    freeze: str = "none",
    lr_mult: str | None = None,
) -> float:
    """Train for `steps` SGD steps (cosine schedule); returns seconds spent."""
    from cnnlab.train.finetune import apply_freeze, param_groups, parse_lr_mult, plan_freeze, set_train_mode

    plan = plan_freeze(model, freeze)
    apply_freeze(model, plan)
    groups = param_groups(model, lr, weight_decay, parse_lr_mult(lr_mult, model))
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    dev = next(model.parameters()).device
    m = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
    s = torch.tensor(std, device=dev).view(1, -1, 1, 1)
    g = torch.Generator().manual_seed(seed)
    n = len(data.y)
    batch = min(batch, n)
    order = torch.randperm(n, generator=g)
    pos = 0
    t0 = time.perf_counter()
    set_train_mode(model, plan)
    for step in range(steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        i = order[pos : pos + batch]
        pos += batch
        x = _augment(data.x[i].float() / 255.0, g)
        x = (x.to(dev) - m) / s
        factor = 0.5 * (1 + math.cos(math.pi * step / steps))
        for grp in opt.param_groups:
            grp["lr"] = lr * grp["lr_mult"] * factor
        loss = F.cross_entropy(model(x), data.y[i].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def accuracy(model: nn.Module, data: Split, mean: list[float], std: list[float], batch: int = 500) -> float:
    model.eval()
    dev = next(model.parameters()).device
    m = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
    s = torch.tensor(std, device=dev).view(1, -1, 1, 1)
    correct = 0
    for a in range(0, len(data.y), batch):
        x = (data.x[a : a + batch].to(dev).float() / 255.0 - m) / s
        correct += int((model(x).argmax(1).cpu() == data.y[a : a + batch]).sum())
    return correct / max(1, len(data.y))


# -- the experiment -----------------------------------------------------------------------------------------


def _device(cfg: Config) -> torch.device:
    from cnnlab.train.ddp import pick_device

    return pick_device(cfg.device)


def _source_key(cfg: Config) -> str:
    keys = ("data", "model", "source_per_class", "source_steps", "batch_size", "lr", "weight_decay")
    text = json.dumps({k: getattr(cfg, k) for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def pretrain(
    cfg: Config, source: Split, source_test: Split, mean: list[float], std: list[float], out: Path, log: Callable
) -> tuple[Path, float]:
    """Train the source network once (reused when this exact configuration was already trained in `out`).

    Returns its path and its test accuracy on the source task."""
    from cnnlab.registry import create_model
    from cnnlab.weights import load_into, load_state_dict, save_state_dict

    path = out / f"source-{_source_key(cfg)}.safetensors"
    torch.manual_seed(12345)
    model = create_model(cfg.model, num_classes=len(source.classes), in_chans=source.x.shape[1])
    model.to(_device(cfg))
    if path.is_file():
        load_into(model, load_state_dict(path), source=str(path))
        log(f"source model: reusing {path}")
    else:
        secs = fit(model, source, cfg.source_steps, cfg.batch_size, cfg.lr, cfg.weight_decay, mean, std, seed=12345)
        save_state_dict(model.state_dict(), path)
        log(f"source model: {cfg.model}, {len(source.classes)} classes, {cfg.source_steps} steps, {secs:.0f} s: {path}")
    acc = accuracy(model, source_test, mean, std)
    log(f"source model: {100 * acc:.1f}% on the source task's test images")
    return path, acc


def run_one(cfg: Config, method: str, data: Split, test: Split, source: Path, mean, std, seed: int) -> dict:
    from cnnlab.registry import create_model, get_entry
    from cnnlab.train.pretrained import load_pretrained, read_source

    torch.manual_seed(seed)
    model = create_model(cfg.model, num_classes=len(data.classes), in_chans=data.x.shape[1])
    if method != "scratch":
        load_pretrained(model, get_entry(cfg.model).family, read_source(str(source)), str(source))
    model.to(_device(cfg))
    freeze = "backbone" if method == "linear" else "none"
    mult = DISC_MULT if method == "discriminative" else None
    secs = fit(model, data, cfg.target_steps, cfg.target_batch, cfg.lr, cfg.weight_decay, mean, std, seed, freeze, mult)
    return {"method": method, "seed": seed, "test_acc": accuracy(model, test, mean, std), "seconds": round(secs, 2)}


def summarize(results: list[dict], sizes, methods=METHODS) -> dict:
    table: dict[int, dict[str, dict]] = {}
    for n in sizes:
        table[n] = {}
        for m in methods:
            accs = np.array([r["test_acc"] for r in results if r["n"] == n and r["method"] == m])
            if len(accs):
                std = float(accs.std(ddof=1)) if len(accs) > 1 else 0.0
                table[n][m] = {"mean": float(accs.mean()), "std": std, "runs": len(accs)}
    return table


def verdict(table: dict) -> tuple[dict[int, str], list[str]]:
    """The winner at each size, and plain sentences comparing them with the lecture's advice."""
    winners, lines = {}, []
    sizes = sorted(table)
    for n in sizes:
        ranked = sorted(table[n].items(), key=lambda kv: -kv[1]["mean"])
        (w, a), (r, b) = ranked[0], ranked[1]
        winners[n] = w
        close = a["mean"] - b["mean"] < max(a["std"], b["std"])
        lines.append(
            f"- {n} images/class: **{LABELS[w]}** won ({100 * a['mean']:.1f}%), ahead of {LABELS[r]} "
            f"({100 * b['mean']:.1f}%)" + (" by less than one standard deviation" if close else "") + "."
        )
    small, large = sizes[0], sizes[-1]
    ok_small = winners[small] == "linear"
    ok_large = winners[large] in ("discriminative", "full")
    lines.append(
        f"- Lecture advice, small similar data -> linear probe: "
        f"{'agrees' if ok_small else 'does not agree'} at {small} images/class (winner: {LABELS[winners[small]]})."
    )
    lines.append(
        f"- Lecture advice, more data -> fine-tune: "
        f"{'agrees' if ok_large else 'does not agree'} at {large} images/class (winner: {LABELS[winners[large]]})."
    )
    return winners, lines


def plot(table: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnlab.fileio import atomic_path

    sizes = sorted(table)
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in METHODS:
        pts = [(n, table[n][m]) for n in sizes if m in table[n]]
        ax.errorbar(
            [n for n, _ in pts],
            [100 * v["mean"] for _, v in pts],
            yerr=[100 * v["std"] for _, v in pts],
            marker="o",
            capsize=3,
            label=LABELS[m],
        )
    ax.set_xscale("log")
    # Ticks at the sizes that were run, as plain numbers: log-scale defaults read "6x10^0" and "2x10^1".
    from matplotlib.ticker import NullLocator

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


def commands(cfg: Config, argv: str, source: Path) -> list[str]:
    """The command that made this report, and the same four settings through `cnnlab train` for one's own data."""
    steps, lr = cfg.target_steps, cfg.lr
    common = f"--set iterations={steps} --batch-size {cfg.target_batch} --lr {lr} --set schedule=cosine"
    return [
        argv,
        "# the same four settings on your own data (TARGET: a dataset spec), one run each:",
        f"cnnlab train {cfg.model} --data TARGET {common}",
        f"cnnlab train {cfg.model} --data TARGET --weights {source} --freeze backbone {common}",
        f"cnnlab train {cfg.model} --data TARGET --weights {source} --lr-mult {DISC_MULT} {common}",
        f"cnnlab train {cfg.model} --data TARGET --weights {source} {common}",
    ]


def report_markdown(cfg: Config, table: dict, lines: list[str], cmds: list[str], info: dict) -> str:
    sizes = sorted(table)
    head = "| method | " + " | ".join(f"{n}/class" for n in sizes) + " |"
    rows = [head, "|---|" + "---|" * len(sizes)]
    for m in METHODS:
        cells = []
        for n in sizes:
            v = table[n].get(m)
            best = v is not None and max(table[n].values(), key=lambda t: t["mean"]) is v
            cell = "-" if v is None else f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}"
            cells.append(f"**{cell}**" if best else cell)
        rows.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    src = info["source_classes"]
    tgt = info["target_classes"]
    return "\n".join(
        [
            "# Transfer learning: scratch vs linear probe vs fine-tuning",
            "",
            f"Model {cfg.model}; data `{cfg.data}`. Source task: {len(src)} classes ({', '.join(src)}), "
            f"{cfg.source_per_class} images each, {cfg.source_steps} steps of {cfg.batch_size} (source test accuracy "
            f"{100 * info['source_test_acc']:.1f}%). Target task: the "
            f"other {len(tgt)} classes ({', '.join(tgt)}), N training images per class, {cfg.target_steps} SGD "
            f"steps of batch min({cfg.target_batch}, {len(tgt)}N), lr {cfg.lr} (cosine), weight decay "
            f"{cfg.weight_decay}, flip + crop augmentation; test accuracy on {cfg.test_per_class} held-out images "
            f"per target class. Discriminative rates: `{DISC_MULT}`. Mean ± sample std over {cfg.seeds} seeds "
            "(each seed: its own target subset, head init and data order). Best per column in bold.",
            "",
            *rows,
            "",
            "![accuracy vs images per class](transfer.png)",
            "",
            "## Verdict",
            "",
            *lines,
            "",
            "## Commands",
            "",
            "```",
            *cmds,
            "```",
            "",
            f"Wall time {info['seconds']:.0f} s with {cfg.threads} torch thread(s); load average at start "
            f"{info['load_start']}, at end {info['load_end']}.",
            "",
        ]
    )


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run_experiment(
    cfg: Config, out: str | Path, argv: str = "cnnlab reproduce transfer", log: Callable = print
) -> dict:
    """Run everything, write report.md, transfer.png, results.json into `out`; returns the results."""
    from cnnlab.fileio import write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    load_start = _load()
    try:
        source, source_test, test, targets, mean, std = load_tasks(cfg)
        src_path, src_acc = pretrain(cfg, source, source_test, mean, std, out, log)
        results = []
        for n in cfg.sizes:
            for seed in range(cfg.seeds):
                for method in METHODS:
                    r = run_one(cfg, method, targets[n][seed], test, src_path, mean, std, seed)
                    r["n"] = n
                    results.append(r)
                    log(
                        f"{n:>5}/class seed {seed} {method:<15} test acc {100 * r['test_acc']:5.1f}%  "
                        f"{r['seconds']:.1f} s"
                    )
                write_json(out / "results.json", {"config": asdict(cfg), "runs": results})  # partial progress
    finally:
        torch.set_num_threads(old_threads)
    table = summarize(results, cfg.sizes)
    winners, lines = verdict(table)
    info = {
        "seconds": time.perf_counter() - t0,
        "load_start": load_start,
        "load_end": _load(),
        "source_classes": source.classes,
        "source_test_acc": src_acc,
        "target_classes": test.classes,
    }
    cmds = commands(cfg, argv, src_path)
    plot(
        table,
        out / "transfer.png",
        f"{cfg.model}: {len(source.classes)}-class source -> {len(test.classes)}-class target",
    )
    write_text(out / "report.md", report_markdown(cfg, table, lines, cmds, info))
    summary = {"config": asdict(cfg), "runs": results, "table": {str(k): v for k, v in table.items()}}
    summary.update({"winners": {str(k): v for k, v in winners.items()}, "verdict": lines, **info})
    write_json(out / "results.json", summary)
    log(f"report: {out / 'report.md'} ({info['seconds']:.0f} s)")
    return summary
