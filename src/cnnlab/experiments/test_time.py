"""`test-time`: more forward passes per image at test time buy accuracy: views of one model (Krizhevsky et al.
2012, Sec. 4.1; Simonyan & Zisserman 2014, Sec. 3.2, Table 5), ensembles of independently seeded models
(Krizhevsky et al., Table 2) and of different architectures (Simonyan & Zisserman, Table 6).

ResNet-20 trained on 5,000 CIFAR-10 images with flips and 4-pixel crops, so that the flipped and shifted test
views are views it was trained on, for five seeds (the ensembles of five need five), and a second architecture,
MobileNet v1 on depthwise's CIFAR rows, on the same five seeds (the framework gives every arm every seed; it is
a tenth of ResNet-20's MACs, and five of it give the mixed ensemble five pairs to judge on). Every ResNet-20
trial's run directory is evaluated with cnnlab.data.tta's views, the softmax averaged over views (and over
members) as cnnlab.train.evaluate does:

* none, the centre view (1 pass): the whole 32 px image, which is training's centre crop (crop:4 cuts 32 x 32
  from the image padded to 40 x 40);
* flip (2): the image and its mirror;
* 10crop (10): 32 px corner and centre crops, and their mirrors, of the image enlarged by 1/0.875 to 37 px
  (tta.CROP_RATIO, AlexNet's protocol at a fixed input size), so every crop is at the training resolution and
  shifted by at most 3 px from the centre, inside training's 4 px, at 1.16x the scale the net was trained on;
* multiscale (6): the whole image at 1, 1.15 and 1.3x and mirrors (ResNet-20 pools globally), 8x the MACs.

An ensemble of k for seed s holds the seeds s, s+1, ..., s+k-1 (mod n): each seed has its own k-ensemble, one
that contains it, so the mean over seeds is over n different ensembles and the paired difference compares each
model with an ensemble it belongs to. The mixed ensemble of seed s is ResNet-20 and MobileNet of seed s; its
best member is the one of lower test error (the bar of "below either net alone", picked on the test set on
purpose: it is the hardest bar). Each member's test-set softmax, per view mode, is cached in
DIR/evaluation/ARM-seedS-MODE.npz; every ensemble is averaged from those, so no member runs twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.depthwise import ROWS
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare, per_seed

MODES = ("none", "flip", "10crop", "multiscale")  # cnnlab.data.tta's evaluation views, fewest passes first
LABELS = {"none": "centre view", "flip": "flip", "10crop": "10-crop", "multiscale": "multi-scale"}
VIEWS = {  # what the report says each mode is (cnnlab.data.tta's table, at CIFAR's 32 px)
    "none": "the whole image, which is training's centre crop",
    "flip": "the image and its mirror",
    "10crop": "corner and centre crops at the training size of the image enlarged by 1/0.875, and mirrors",
    "multiscale": "the whole image at 1, 1.15 and 1.3x, and mirrors",
}
ENSEMBLE_VIEWS = ("flip", "10crop")  # the largest ensemble is also averaged over these views (free: cached)


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 5 seeds x 2 arms, then 19 views per image of each ResNet-20 trial. Measured on 2 cores (AMD EPYC):
    # 42 min wall, 37 of them the first trial starved at nice 19 beside other full runs; once the cores were free
    # a ResNet-20 trial took about 30 s, a MobileNet one 6 s and the whole evaluation 75 s (9.7 CPU-min in all).
    seeds: int = 5  # the ensembles of 5 need five trained seeds
    train_images: int = 5_000
    test_images: int = 1_000  # 100 per class: the views' paired differences are what is judged, not the level
    epochs: int = 5
    model: str = "resnet20"  # the one evaluated with every view, and the ensembles' member
    others: tuple[str, ...] = ("mobilenet",)  # the mixed ensemble's other architectures (PARTNERS or zoo names)
    ensembles: tuple[int, ...] = (1, 2, 3, 5)  # sizes k of the same-architecture ensembles


# The mixed ensemble's partners by name (Config.others); any other name is a zoo model as it is. MobileNet v1 on
# depthwise's CIFAR rows: another design (depthwise separable, no shortcuts), about ResNet-20's test error at this
# size (depthwise's report) for a tenth of its MACs, so five seeds of it cost about a quarter of ResNet-20's five.
PARTNERS = {
    "mobilenet": Arm("mobilenet", "MobileNet v1 (CIFAR rows)", "mobilenet_v1",
                     {"rows": [list(r) for r in ROWS], "alpha": 1.0, "separable": True}),
}  # fmt: skip


def _arms(cfg: Config) -> list[Arm]:
    sizes = list(cfg.ensembles)
    if not sizes or sizes != sorted(set(sizes)) or sizes[0] < 1:
        raise CnnlabError(f"config: ensembles must be increasing sizes of at least 1, got {sizes}")
    if sizes[-1] > cfg.seeds:  # refused, not shrunk: a report of other sizes than asked for would mislead
        raise CnnlabError(
            f"config: an ensemble of {sizes[-1]} needs {sizes[-1]} seeds, got seeds = {cfg.seeds}; "
            f"raise seeds or lower ensembles"
        )
    if not cfg.others or cfg.model in cfg.others or len(set(cfg.others)) < len(cfg.others):
        raise CnnlabError(f"config: others must name architectures other than {cfg.model}, each once")
    return [Arm(cfg.model, cfg.model, cfg.model), *(PARTNERS.get(o) or Arm(o, o, o) for o in cfg.others)]


def _method(kind: str, label: str, arm: str, metric: str, members: list[str], mode: str) -> dict[str, Any]:
    return {"kind": kind, "label": label, "arm": arm, "metric": metric, "members": members, "mode": mode}


def methods(cfg: Config) -> list[dict[str, Any]]:
    """What is evaluated: each a per-seed metric of `arm`'s trials, its members' architectures and view mode."""
    main, big = cfg.model, cfg.ensembles[-1]
    out = [_method("views", LABELS[m], main, f"test_error_{m}", [main], m) for m in MODES]
    out += [_method("ensemble", f"{k} x {main}", main, f"test_error_ens{k}", [main] * k, "none")
            for k in cfg.ensembles if k > 1]  # fmt: skip
    if big > 1:
        out += [_method("ensemble+views", f"{big} x {main}, {LABELS[m]}", main, f"test_error_ens{big}_{m}",
                        [main] * big, m) for m in ENSEMBLE_VIEWS]  # fmt: skip
    out.append(_method("mixed", " + ".join([main, *cfg.others]), main, "test_error_mixed", [main, *cfg.others], "none"))
    out += [_method("other", f"{o} alone", o, "test_error_none", [o], "none") for o in cfg.others]
    return out


def _probs(run: Path, spec: str, caches: dict[str, Path], device: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """A trial's test-set softmax under each view mode, read from its cache file or computed as
    cnnlab.train.evaluate computes one member (same loading, normalization and predict_proba) and written there;
    the checkpoint and the data are loaded once for all the modes missing."""
    import numpy as np
    import torch

    missing = {mode: path for mode, path in caches.items() if not path.is_file()}
    if missing:
        from cnnlab.data.dataset import load
        from cnnlab.fileio import atomic_path
        from cnnlab.train.evaluate import load_checkpoint, normalize, predict_proba

        m = load_checkpoint(run, device)
        ds = load(spec, split="test", size=m.meta.get("image_size") or None)
        x = normalize(torch.as_tensor(ds.x), m.meta["mean"], m.meta["std"])
        for mode, path in missing.items():
            log(f"evaluating {path.stem}")
            prob = predict_proba(m.model, x, mode, name=m.meta["model"])
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, prob=prob.numpy())
    return {mode: torch.from_numpy(np.load(path)["prob"]) for mode, path in caches.items()}


def _error(probs: list[Any], y: Any) -> float:
    """Top-1 error of the members' averaged softmax, summed in member order as cnnlab.train.evaluate does (so
    the number equals its, bit for bit)."""
    from cnnlab.train.evaluate import metrics

    return 1.0 - metrics(sum(probs[1:], probs[0]) / len(probs), y, [])["top1"]


def _view_costs(members: list[Arm], mode: str, image: list[int], classes: int, memo: dict) -> tuple[int, int]:
    """Forward passes per image (views x members) and their MACs (the analyzer's, at each view's size)."""
    import torch

    import cnnlab
    from cnnlab.data.tta import tta_views
    from cnnlab.train.setup import create_with_overrides

    sizes = [tuple(v.shape[1:]) for v in tta_views(torch.zeros(1, *image), mode)]
    macs = 0
    for arm in members:
        for size in sizes:
            if (arm.name, size) not in memo:
                with torch.device("meta"):
                    net = create_with_overrides(arm.model, arm.model_args, num_classes=classes, in_chans=image[0])
                memo[arm.name, size] = int(cnnlab.analyze(net, size).total_macs)
            macs += memo[arm.name, size]
    return len(sizes) * len(members), macs


def evaluate(cfg: Config, r: dict[str, Any], out: Path, device: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Every trial under the views it needs, then the ensembles; per-seed errors go into the trial dicts."""
    import torch

    from cnnlab.data.dataset import load
    from cnnlab.experiments import stats
    from cnnlab.train.ddp import pick_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev, spec, main, n = pick_device(device), f"npz:{(out / 'data.npz').resolve()}", cfg.model, cfg.seeds
    y = torch.as_tensor(load(spec, split="test").y)
    trial = {(t["arm"], t["seed"]): t for t in r["trials"]}
    prob = {}
    for (arm, seed), t in trial.items():
        modes = MODES if arm == main else ("none",)  # the other nets only join the mixed ensemble
        caches = {mode: out / "evaluation" / f"{arm}-seed{seed}-{mode}.npz" for mode in modes}
        for mode, p in _probs(out / t["run_dir"], spec, caches, dev, log).items():
            prob[arm, seed, mode] = p
            t[f"test_error_{mode}"] = _error([p], y)
    big = cfg.ensembles[-1]
    for s in range(n):
        t, ring = trial[main, s], [(s + j) % n for j in range(big)]  # seed s and the next ones, cyclically
        for k in (k for k in cfg.ensembles if k > 1):  # k = 1 is the centre view itself
            t[f"test_error_ens{k}"] = _error([prob[main, m, "none"] for m in ring[:k]], y)
        if big > 1:
            for mode in ENSEMBLE_VIEWS:
                t[f"test_error_ens{big}_{mode}"] = _error([prob[main, m, mode] for m in ring], y)
        pair = [main, *cfg.others]
        t["test_error_mixed"] = _error([prob[a, s, "none"] for a in pair], y)
        t["test_error_best_member"] = min(trial[a, s]["test_error_none"] for a in pair)
    memo: dict = {}
    rows, arms = [], {a.name: a for a in _arms(cfg)}
    for m in methods(cfg):
        members = [arms[a] for a in m["members"]]
        passes, macs = _view_costs(members, m["mode"], r["data"]["image_size"], len(r["data"]["classes"]), memo)
        rows.append(
            {**m, "passes": passes, "macs": macs, "test_error": stats.mean_std(per_seed(r, m["arm"], m["metric"]))}
        )
    return {
        "methods": rows,
        "ensembles": "the k-ensemble of seed s holds seeds s, s+1, ..., s+k-1 (mod seeds); softmax averaged",
        "mixed": f"seed s of {', '.join([main, *cfg.others])}; best member: the lower test error of seed s",
        "cache": "evaluation/ARM-seedS-MODE.npz: each trial's test-set softmax under one view mode",
    }


def _within(r: dict[str, Any], key: str, text: str, arm: str, better: str, worse: str, source: str) -> dict[str, Any]:
    """A directional claim that one measurement of `arm`'s trials (`better`) is below another (`worse`), paired
    by seed. runner.compare pairs two arms on one metric, so here each measurement stands in for an arm; the
    claim then names the real arm and both metrics (`lower_metric` is what the lower side reads)."""
    rows = [
        {"arm": m, "seed": t["seed"], "error": t[m]} for t in r["trials"] if t["arm"] == arm for m in (better, worse)
    ]
    claim = compare({"trials": rows}, key, text, "error", better, worse, source)
    return {**claim, "lower": arm, "higher": arm, "metric": worse, "lower_metric": better}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, main, big = published("test-time"), cfg.model, cfg.ensembles[-1]
    claims = [_within(r, m, f"{LABELS[m]} tests better than the centre view", main, f"test_error_{m}",
                      "test_error_none", p["crops"]) for m in MODES[1:]]  # fmt: skip
    if big > 1:
        claims.append(_within(r, "ensemble", f"an ensemble of {big} {main} tests better than one", main,
                              f"test_error_ens{big}", "test_error_none", p["ensemble"]))  # fmt: skip
    claims.append(_within(r, "mixed", f"{' + '.join([main, *cfg.others])} tests better than its best member",
                          main, "test_error_mixed", "test_error_best_member", p["mixed"]))  # fmt: skip
    return claims


def _pct(s: dict[str, Any]) -> str:
    return f"{100 * s['mean']:.2f}" + ("" if s["std"] is None else f" ± {100 * s['std']:.2f}")


def report(cfg: Config, r: dict[str, Any], out: Path) -> list[str]:
    ev = r["evaluation"]
    lines = ["## Test-time views and ensembles", "",
             "Views (softmax averaged over them): " + "; ".join(f"{LABELS[m]}: {VIEWS[m]}" for m in MODES) + ".",
             f"Ensembles: {ev['ensembles']}. Mixed: {ev['mixed']}.", "",
             "| method | forward passes / image | MMACs / image | test error % |", "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {m['label']} | {m['passes']} | {m['macs'] / 1e6:.1f} | {_pct(m['test_error'])} |"
              for m in ev["methods"]]  # fmt: skip
    plot_passes(ev["methods"], out / "passes.png")
    return [*lines, "", "![test accuracy against forward passes per image](passes.png)", ""]


STYLE = {  # kind: marker, colour, legend entry, label offset in points (apart where points share an x)
    "views": ("o", "#1f77b4", "one model, test-time views", (6, -10)),
    "ensemble": ("s", "#d62728", "ensemble of seeds, centre view", (6, 4)),
    "ensemble+views": ("D", "#9467bd", "ensemble of seeds x views", (6, 4)),
    "mixed": ("^", "#2ca02c", "ensemble of architectures", (-6, 6)),
    "other": ("v", "#7f7f7f", "the other architecture alone", (-6, 6)),
}


def plot_passes(rows: list[dict[str, Any]], path: Path) -> None:
    """Test accuracy (mean, error bars: std over seeds) against forward passes per image, log x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnlab.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(9, 4.5))
    seen = set()
    for m in rows:
        marker, color, name, (dx, dy) = STYLE[m["kind"]]
        acc, err = 100 * (1 - m["test_error"]["mean"]), 100 * (m["test_error"]["std"] or 0.0)
        ax.errorbar(m["passes"], acc, yerr=err, fmt=marker, color=color, capsize=3,
                    label=None if m["kind"] in seen else name)  # fmt: skip
        ax.annotate(m["label"], (m["passes"], acc), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                    ha="left" if dx > 0 else "right")  # fmt: skip
        seen.add(m["kind"])
    chain = [m for m in rows if m["metric"] == "test_error_none" and m["kind"] == "views"]
    chain += [m for m in rows if m["kind"] == "ensemble"]  # one model, then 2, 3, ... of it: the ensemble curve
    ax.plot([m["passes"] for m in chain], [100 * (1 - m["test_error"]["mean"]) for m in chain], color="#d62728",
            alpha=0.4, lw=1)  # fmt: skip
    ax.set_xscale("log")
    ticks = sorted({m["passes"] for m in rows})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("forward passes per image (views x models, log scale)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.margins(x=0.12)  # room for the labels of the outermost points
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the points fill the axes
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


EXPERIMENT = Experiment(
    name="test-time",
    claim="more forward passes per image (views, seeds, architectures) lower the test error, at their cost",
    source="Krizhevsky et al. 2012, Sec. 4.1, Table 2; Simonyan & Zisserman 2014, Sec. 3.2, Tables 5-6",
    config=Config,
    # 2 seeds: ensembles of 1 and 2 only; 100 test images: the 19 views per image of each ResNet-20 trial dominate
    quick={**QUICK, "train_images": 384, "test_images": 100, "ensembles": (1, 2)},
    paper={**PAPER, "epochs": 164},
    arms=_arms,
    judge=judge,
    evaluate=evaluate,
    report=report,
)
