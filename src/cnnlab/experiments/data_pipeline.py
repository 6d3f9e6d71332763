"""`data-pipeline`: where a training step's time goes, per stage, for two ways of feeding it (a measurement).

(a) `jpeg`: CIFAR images written once as JPEG files (DIR/jpeg/train/CLASS/i.jpg), decoded every epoch through a
torchvision ImageFolder, its transforms and a DataLoader with 0, 1 or 2 workers; (b) `cache`: the same JPEGs
decoded once into cnnlab's uint8 cache (DIR/cache) and fed by cnnlab.data.Loader with batched augmentation. Each
feeds a small and a large model for `steps` SGD steps after `warmup`, `repeats` times; the verdicts read the share
of the step that waits on data (the stages and their clocks: data_pipeline_stages). Every cell (pipeline, workers,
model) is DIR/cells/NAME.json, rewritten after each repeat; the repeats go round the cells, so a change in the
machine's load lands on every cell alike, and a killed run continues at the repeat it stopped in.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.experiments import stats
from cnnlab.experiments.base import Experiment, Setup
from cnnlab.experiments.data_pipeline_stages import STAGES
from cnnlab.experiments.published import published

AUGMENT = "flip,crop:4"  # the one augmentation both pipelines implement (torchvision's transforms mirror it)
# Thresholds fixed before any measurement. Above half, the loader takes longer than the model's whole step: it is
# the bottleneck. Below a tenth, even an infinitely fast loader would speed training up by at most 1/0.9 = 1.11x:
# the loader has stopped mattering (what "read into RAM, preprocess once" promises).
BOTTLENECK, NEGLIGIBLE = 0.5, 0.1


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 8 cells x 5 repeats x 23 steps, about 10 minutes on 2 loaded CPU cores (resnet20's steps dominate).
    images: int = 4_096  # of the training split, as JPEG files; at least (warmup + steps) x batch_size
    warmup: int = 3  # steps not counted: worker start-up, allocator, first-call costs
    steps: int = 20
    repeats: int = 5
    workers: tuple[int, ...] = (0, 1, 2)
    # On a CPU lenet5 is cheap enough for the loader to matter and resnet20 dear enough for it to stop mattering.
    models: tuple[str, ...] = ("lenet5", "resnet20")
    threads: int = 1  # torch threads of the step: on 2 cores this leaves a core for a worker instead of a fight


def cells(cfg: Config) -> list[tuple[str, int, str]]:
    """(pipeline, workers, model) of every cell, the JPEG folder's first."""
    return [("jpeg", w, m) for m in cfg.models for w in cfg.workers] + [("cache", 0, m) for m in cfg.models]


def cell_name(pipeline: str, workers: int, model: str) -> str:
    return f"jpeg-w{workers}-{model}" if pipeline == "jpeg" else f"cache-{model}"


def label(pipeline: str, workers: int) -> str:
    return f"JPEG folder, {workers} worker{'' if workers == 1 else 's'}" if pipeline == "jpeg" else "uint8 cache"


def verdict(repeats: list[float], threshold: float, above: bool) -> str:
    """stats.MEASUREMENT_RULE: the median's side of `threshold`, inconclusive when the repeats span it (or when there
    is one repeat: no spread to judge, as one seed is inconclusive for a training claim)."""
    if len(repeats) < 2 or min(repeats) <= threshold <= max(repeats):
        return stats.INCONCLUSIVE
    return stats.AGREES if (statistics.median(repeats) > threshold) == above else stats.DISAGREES


def _arms(cfg: Config) -> list[Any]:
    """No arms (a measurement); the config is checked here because the runner calls this before claiming DIR."""
    import cnnlab

    if min(cfg.repeats, cfg.steps) < 1 or cfg.warmup < 0:
        raise CnnlabError(f"config: repeats and steps must be >= 1 and warmup >= 0, got {cfg.repeats}, "
                          f"{cfg.steps}, {cfg.warmup}")  # fmt: skip
    need = (cfg.warmup + cfg.steps) * cfg.batch_size  # one pass, no epoch restart inside the clock
    if cfg.images < need:
        raise CnnlabError(f"config: images must be at least (warmup + steps) x batch_size = {need}, got {cfg.images}")
    if not cfg.workers or min(cfg.workers) < 0 or len(set(cfg.workers)) < len(cfg.workers):
        raise CnnlabError(f"config: workers must be distinct counts >= 0, got {list(cfg.workers)}")
    if not cfg.models or len(set(cfg.models)) < len(cfg.models):
        raise CnnlabError(f"config: models must be distinct zoo names, got {list(cfg.models)}")
    if cfg.augment != AUGMENT:
        raise CnnlabError(f"config: data-pipeline's two pipelines both implement augment = '{AUGMENT}' only")
    with torch.device("meta"):  # an unknown name is one line (with suggestions) before anything runs
        for m in cfg.models:
            cnnlab.create_model(m, num_classes=10, in_chans=3)
    return []


def _prepare(cfg: Config, out: Path, log: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The JPEG folder (once; DIR/data.json is written last, and its presence makes the runner refuse another
    config in DIR) and its uint8 cache (once, timed: the decode the JPEG pipeline repeats every epoch)."""
    import shutil

    from cnnlab.data import load
    from cnnlab.experiments.data import resolve
    from cnnlab.experiments.data_pipeline_stages import write_jpegs
    from cnnlab.fileio import write_json

    info_path, root = out / "data.json", out / "jpeg" / "train"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
    else:
        spec = resolve(cfg.data)
        src = load(spec, split="train", val_fraction=0.0)
        c, h, w = src.image_shape
        if c != 3 or h != w:
            raise CnnlabError(f"data-pipeline needs square RGB images (CIFAR-10), {spec} has {c}x{h}x{w}")
        if len(src) < cfg.images:
            raise CnnlabError(f"data-pipeline: {spec} has {len(src)} training images, config images = {cfg.images}")
        idx = torch.randperm(len(src), generator=torch.Generator().manual_seed(0))[: cfg.images].sort().values
        shutil.rmtree(out / "jpeg", ignore_errors=True)  # a folder half-written by a killed run
        nbytes = write_jpegs(src.x[idx], src.y[idx], list(src.classes), root)
        info = {"source": spec, "images": cfg.images, "side": h, "classes": len(src.classes), "jpeg_bytes": nbytes}
        write_json(info_path, info)
        log(f"data: {cfg.images} JPEG files of {spec} ({nbytes / 1e6:.1f} MB) -> {root}")
    once = out / "cache.json"
    if not once.is_file():
        shutil.rmtree(out / "cache", ignore_errors=True)  # so that the clock below holds the whole decode
    t = time.perf_counter()
    ds = load(f"folder:{root.parent}", split="train", size=info["side"], val_fraction=0.0, cache_dir=out / "cache")
    if not once.is_file():
        write_json(once, {"decode_seconds": time.perf_counter() - t})
    return ds, {**info, **json.loads(once.read_text())}


def _repeat(cfg: Config, cell: tuple[str, int, str], r: int, ds: Any, root: Path, dev: torch.device) -> dict:
    """One repeat of one cell: a fresh model, optimizer and loader (seeded by the repeat), ms per step per stage."""
    import cnnlab
    from cnnlab.data import Loader
    from cnnlab.experiments import data_pipeline_stages as st
    from cnnlab.experiments.report import load_average

    pipeline, workers, name = cell
    torch.manual_seed(r)
    model = cnnlab.create_model(name, num_classes=ds.num_classes, in_chans=3).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if pipeline == "jpeg":
        folder = st.TimedFolder(root, ds.image_shape[-1], list(ds.mean), list(ds.std))
        batches = torch.utils.data.DataLoader(
            folder, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, drop_last=True,
            pin_memory=dev.type == "cuda", generator=torch.Generator().manual_seed(r), worker_init_fn=st.ignore_sigint,
        )  # fmt: skip
        ms = st.time_steps(batches, folder, model, opt, dev, cfg.warmup, cfg.steps)
    else:
        loader = Loader(ds, batch_size=cfg.batch_size, augment=AUGMENT, seed=r, drop_last=True, device=dev)
        loader.augment = timed = st.TimedAugment(loader.augment, st.syncer(dev))
        ms = st.time_steps(loader, timed, model, opt, dev, cfg.warmup, cfg.steps, gather_is_read=True)
    # The machine's load as the repeat ends: a repeat far off the others is often one that shared its cores.
    return {**ms, "step": sum(ms.values()), "share": st.share_on_data(ms), "load": load_average()}


def measure(cfg: Config, out: Path, device: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Every cell's repeats (read back where DIR has them), then one claim per cell; None if stopped."""
    from cnnlab.fileio import write_json
    from cnnlab.train.ddp import pick_device
    from cnnlab.train.signals import StopRequest

    dev = pick_device(device)
    ds, info = _prepare(cfg, out, log)
    plan = cells(cfg)
    paths = {c: out / "cells" / f"{cell_name(*c)}.json" for c in plan}
    done = {c: json.loads(p.read_text())["repeats"] if p.is_file() else [] for c, p in paths.items()}
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        with StopRequest() as stop:
            for r in range(cfg.repeats):
                for c in plan:
                    if len(done[c]) > r:
                        continue
                    if stop.signal is not None:
                        return None
                    done[c].append(_repeat(cfg, c, r, ds, out / "jpeg" / "train", dev))
                    write_json(paths[c], {"pipeline": c[0], "workers": c[1], "model": c[2], "repeats": done[c]})
                    x = done[c][-1]
                    log(f"repeat {r + 1}/{cfg.repeats}: {cell_name(*c)}: {x['step']:.1f} ms/step, "
                        f"{100 * x['share']:.0f}% waiting on data")  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    results = {c: _summary(c, done[c]) for c in plan}
    return {
        "claims": [_claim(c, results[c]) for c in plan],
        "cells": {cell_name(*c): results[c] for c in plan},
        "data": info,
        "device": str(dev),
        "models": _costs(cfg, ds.image_shape, ds.num_classes),
    }


def _summary(cell: tuple[str, int, str], repeats: list[dict[str, float]]) -> dict[str, Any]:
    pipeline, workers, model = cell
    med = {k: statistics.median(x[k] for x in repeats) for k in (*STAGES, "step", "share")}
    return {"pipeline": pipeline, "workers": workers, "model": model, "ms": {s: med[s] for s in STAGES},
            "step_ms": med["step"], "share": med["share"], "repeats": repeats}  # fmt: skip


def _claim(cell: tuple[str, int, str], s: dict[str, Any]) -> dict[str, Any]:
    pipeline, workers, model = cell
    shares = [x["share"] for x in s["repeats"]]
    if pipeline == "jpeg":
        threshold, above, what = BOTTLENECK, True, "more than half the time"
    else:
        threshold, above, what = NEGLIGIBLE, False, "less than a tenth of the time"
    ours = (f"{100 * s['share']:.1f}% of the step waits on data (median of {len(shares)}, repeats "
            f"{100 * min(shares):.1f}-{100 * max(shares):.1f}%)")  # fmt: skip
    return {
        "key": cell_name(*cell),
        "kind": "measured",
        "text": f"{label(pipeline, workers)}, {model}: the step waits on data {what}",
        "ours": ours,
        "published": published("data-pipeline")["bottleneck"],
        "verdict": f"{verdict(shares, threshold, above)}: {ours}",
        "share": s["share"],
        "repeats": shares,
        "threshold": threshold,
        "side": "above" if above else "below",
    }


def _costs(cfg: Config, image: tuple[int, int, int], classes: int) -> dict[str, dict[str, int]]:
    import cnnlab

    out = {}
    for m in cfg.models:
        with torch.device("meta"):
            rep = cnnlab.analyze(cnnlab.create_model(m, num_classes=classes, in_chans=3), image)
        out[m] = {"params": int(rep.total_params), "macs": int(rep.total_macs)}
    return out


LEGEND = {"read": "read + decode", "other": "other wait (collate; workers)", "copy": "host-to-device copy"}
CLOCK = (
    "Each stage's clock is time.perf_counter on the main process around it; per repeat, the mean over the counted "
    "steps, then the median over repeats (stage by stage, so a row's stages need not add up to its step exactly). "
    "**read**: reading and decoding (JPEG: PIL's open and decode in the dataset; cache: the loader's gather of "
    "uint8 rows, with their copy to a GPU); **augment**: crop, flip, to-float and normalize (JPEG: torchvision, "
    "per image; cache: one batched op); **other**: the rest of the wait for a batch (collation; with workers, "
    "waiting for theirs: their reading and augmenting run in parallel, off this clock); **copy**: host to device "
    "(a no-op on a CPU); **forward** with the loss, **backward**, **optimizer** (SGD step and zero_grad). Waiting "
    "on data = read + augment + other + copy. On CUDA each stage ends in torch.cuda.synchronize() and the "
    "DataLoader pins memory: the copy shows at its own cost and the workers' prefetch as a shrinking wait."
)


def report_lines(cfg: Config, r: dict[str, Any], out: Path) -> list[str]:
    """The stage table and stages.png."""
    d, mc = r["data"], r["models"]
    head = "| pipeline | model | " + " | ".join(STAGES) + " | step | waiting on data |"
    rows = [head, "|---|---|" + "---:|" * (len(STAGES) + 2)]
    for s in r["cells"].values():
        shares = [x["share"] for x in s["repeats"]]
        rows.append(f"| {label(s['pipeline'], s['workers'])} | {s['model']} | "
                    + " | ".join(f"{s['ms'][k]:.1f}" for k in STAGES) + f" | {s['step_ms']:.1f} | "
                    f"**{100 * s['share']:.0f}%** ({100 * min(shares):.0f}-{100 * max(shares):.0f}) |")  # fmt: skip
    _plot(r, out / "stages.png")
    return [
        f"## Where a training step's time goes (ms per step, {r['device']}, batch {cfg.batch_size})",
        "",
        f"{d['images']} training images of `{d['source']}` as JPEG files ({d['jpeg_bytes'] / 1e6:.1f} MB, quality "
        f"90), read from the page cache after the first pass; {cfg.steps} counted steps after {cfg.warmup} warm-up "
        f"steps, {cfg.repeats} repeats, {cfg.threads or 'default'} torch thread(s). Models: "
        + ", ".join(f"{m} ({v['params']:,} params, {v['macs'] / 1e6:.1f}M MACs/image)" for m, v in mc.items())
        + f". The last column: median share, and the repeats' range.{_loads(r)}",
        "",
        *rows,
        "",
        "![time per stage, per pipeline and model](stages.png)",
        "",
        CLOCK,
        "",
        f"One-off: cnnlab decoded the {d['images']} JPEGs into its uint8 cache once in {d['decode_seconds']:.1f} s "
        "(decoding, writing and syncing the cache files, the training statistics); the JPEG pipeline decodes "
        "every image again each epoch.",
        "",
    ]


def _loads(r: dict[str, Any]) -> str:
    got = [x.get("load", "n/a").split()[0] for s in r["cells"].values() for x in s["repeats"]]
    loads = [float(v) for v in got if v != "n/a"]  # n/a: no /proc/loadavg (not Linux)
    return f" The 1-minute load average as each repeat ended: {min(loads):.1f} to {max(loads):.1f}." if loads else ""


def _plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnlab.fileio import atomic_path

    models = list(r["models"])
    by = {m: [s for s in r["cells"].values() if s["model"] == m] for m in models}
    n = max(len(v) for v in by.values())
    fig, axes = plt.subplots(len(models), 1, figsize=(8, 0.9 + 0.45 * n * len(models)), squeeze=False)
    # Warm colours wait on data, cool ones compute: the warm part of a bar is the share the verdict reads.
    colors = dict(zip(STAGES, ("#d7301f", "#fc8d59", "#fdcc8a", "#fee8c8", "#2b8cbe", "#7bccc4", "#bae4bc")))
    for ax, m in zip(axes[:, 0], models):
        cells = by[m][::-1]  # the first cell on top
        left = [0.0] * len(cells)
        for stage in STAGES:
            w = [s["ms"][stage] for s in cells]
            ax.barh(range(len(cells)), w, left=left, color=colors[stage], label=LEGEND.get(stage, stage),
                    edgecolor="white", lw=0.5)  # fmt: skip
            left = [a + b for a, b in zip(left, w)]
        for y, (s, x) in enumerate(zip(cells, left)):
            ax.text(x, y, f" {100 * s['share']:.0f}% on data", va="center", fontsize=8)
        ax.set_yticks(range(len(cells)), [label(s["pipeline"], s["workers"]) for s in cells], fontsize=8)
        ax.set_xlim(0, 1.25 * max(left))
        ax.set_title(f"{m}: ms per training step (median of {len(cells[0]['repeats'])} repeats)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="lower left", bbox_to_anchor=(0, 1.12), frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


EXPERIMENT = Experiment(
    name="data-pipeline",
    claim="a training step can wait on its data: JPEGs decoded every epoch vs a uint8 cache, small vs large model",
    source="the lecture (seed 004); cs231n 2017 lecture 8; FFCV arXiv:2306.12517; airbench arXiv:2404.00498",
    config=Config,
    # CI size: a few steps per cell; the numbers mean little (2 repeats are often inconclusive).
    quick={"images": 256, "batch_size": 64, "warmup": 1, "steps": 3, "repeats": 2},
    paper={},  # nothing to scale up: the full size is the measurement (on a GPU too)
    arms=_arms,
    judge=lambda cfg, r: r["claims"],
    report=report_lines,
    measure=measure,
)
