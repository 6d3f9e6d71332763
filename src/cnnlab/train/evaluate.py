"""Evaluation of checkpoints: top-1/top-5, per-class accuracy, confusion matrix, test-time augmentation and
ensembles of any architectures (the softmax outputs are averaged, as for the lecture's 7-CNN AlexNet ensemble,
18.2% -> 15.4% top-5 error).

TTA modes are cnnlab.data.tta's vocabulary (EVAL_MODES: none, flip, 10crop, multiscale), defined there once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.augment import Augment
from cnnlab.data.tta import check_tta, tta_views
from cnnlab.errors import CnnlabError
from cnnlab.models.base import AuxOutputs
from cnnlab.train import ddp
from cnnlab.train.checkpoint import resolve_weights
from cnnlab.train.numerics import autocast, logits_of, to_device, use_channels_last
from cnnlab.weights import load_into, read_weights


@dataclass
class Loaded:
    model: nn.Module
    meta: dict[str, Any]
    path: Path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Loaded:
    """A model rebuilt from a weights file written by cnnlab (a run directory picks its best checkpoint)."""
    from cnnlab.train.setup import attach_emulation, create_with_overrides

    wpath = resolve_weights(path)
    state, meta = read_weights(wpath)
    if not meta.get("model"):
        raise CnnlabError(f"{wpath}: no cnnlab model description in this file; was it written by cnnlab train?")
    num_classes, in_chans = int(meta["num_classes"]), int(meta["in_chans"])
    model = create_with_overrides(
        meta["model"], meta.get("model_args") or {}, num_classes=num_classes, in_chans=in_chans
    )
    attach_emulation(model, meta.get("emulate"))
    load_into(model, state, str(wpath))
    model.to(device).eval()
    return Loaded(model, meta, wpath)


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CnnlabError(f"--batch-size must be a positive integer, got {batch_size!r}")
    return batch_size


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    x: torch.Tensor,
    tta: str = "none",
    batch_size: int = 256,
    name: str = "model",
    progress: bool = False,
    desc: str = "",
) -> torch.Tensor:
    """Softmax probabilities (N, classes), averaged over the TTA views; x is normalized float (N, C, H, W).

    `progress` draws a bar on stderr (one line at the end when stderr is not a terminal), labelled `desc`
    (default: "eval NAME (TTA MODE)").
    """
    from cnnlab.train.progress import Progress

    check_batch_size(batch_size)
    device = next(model.parameters()).device
    model.eval()
    out = []
    desc = desc or f"eval {name}" + ("" if tta == "none" else f" (TTA {tta})")
    bar = Progress(-(-len(x) // batch_size), desc, progress)
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        p = 0
        vs = tta_views(xb, tta)
        for v in vs:
            try:
                logits = model(v)
            except (RuntimeError, ValueError) as e:
                if tta.partition(":")[0] == "multiscale":  # its views are larger than the trained size
                    raise CnnlabError(
                        f"{name} cannot take {v.shape[-2]}x{v.shape[-1]} inputs, so multiscale TTA does not apply; "
                        f"use --tta flip or 10crop"
                    ) from None
                raise CnnlabError(f"{name}: {str(e).splitlines()[0]}") from None
            if isinstance(logits, AuxOutputs):
                logits = logits.logits
            p = p + logits.float().softmax(1)
        out.append((p / len(vs)).cpu())
        bar.update(len(xb))
    bar.close()
    return torch.cat(out) if out else torch.zeros(0, 0)


def normalize(x_u8: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 images -> float, normalized exactly as cnnlab.data.Loader does (so eval matches the training run's
    own test figures bit for bit)."""
    return Augment(None, tuple(mean), tuple(std)).normalize(x_u8, from_uint8=True)


def metrics(prob: torch.Tensor, y: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    """Top-1, top-5, per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    k = min(5, prob.shape[1])
    top = prob.topk(k, dim=1).indices
    pred = top[:, 0]
    nc = prob.shape[1]
    confusion = torch.bincount(y * nc + pred, minlength=nc * nc).view(nc, nc)
    counts = confusion.sum(1)
    per_class = {
        classes[c] if c < len(classes) else str(c): (float(confusion[c, c] / counts[c]) if counts[c] else None)
        for c in range(nc)
    }
    return {
        "n": int(len(y)),
        "top1": float((pred == y).float().mean()),
        "top5": float((top == y[:, None]).any(1).float().mean()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def evaluate(
    checkpoints: list[str | Path],
    data: str | None = None,
    split: str = "test",
    tta: str = "none",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate one checkpoint, or the softmax average of several (any architectures, any input sizes).

    `progress` shows one progress bar per model on stderr (see predict_proba).
    """
    from cnnlab.data.dataset import load

    check_tta(tta)
    check_batch_size(batch_size)
    if not checkpoints:
        raise CnnlabError("nothing to evaluate: give a run directory or checkpoint")
    loaded = [load_checkpoint(c, device) for c in checkpoints]
    spec = data or loaded[0].meta.get("data")
    if not spec:
        raise CnnlabError("no data: pass --data SPEC")
    classes = list(loaded[0].meta.get("classes") or [])
    members, prob_sum, y_ref = [], None, None
    cache: dict[int | None, Any] = {}
    for k, m in enumerate(loaded, start=1):
        size = m.meta.get("image_size") or None
        if size not in cache:
            cache[size] = load(spec, split=split, size=size)
        ds = cache[size]
        x, y = torch.as_tensor(ds.x), torch.as_tensor(ds.y)
        if limit:
            x, y = x[:limit], y[:limit]
        if x.shape[1] != int(m.meta["in_chans"]):
            raise CnnlabError(
                f"{m.path.name} expects {m.meta['in_chans']}-channel images; {spec} has {x.shape[1]} channels"
            )
        trained_on = list(m.meta.get("classes") or [])
        if trained_on and list(ds.classes) != trained_on:
            raise CnnlabError(class_mismatch(m.path.name, trained_on, list(ds.classes), str(spec)))
        if y_ref is not None and not torch.equal(y, y_ref):
            raise CnnlabError("ensemble members see different label orders; use the same --data for all")
        y_ref = y
        if m.meta.get("num_classes") != loaded[0].meta.get("num_classes"):
            raise CnnlabError("ensemble members predict different numbers of classes")
        which = f" {k}/{len(loaded)}" if len(loaded) > 1 else ""  # the member of an ensemble that is running
        desc = f"eval{which} {m.meta['model']}" + ("" if tta == "none" else f" (TTA {tta})")
        prob = predict_proba(
            m.model, normalize(x, m.meta["mean"], m.meta["std"]), tta, batch_size, m.meta["model"], progress, desc
        )
        member = metrics(prob, y, classes)
        members.append({"checkpoint": str(m.path), "model": m.meta["model"], "top1": member["top1"],
                        "top5": member["top5"]})  # fmt: skip
        prob_sum = prob if prob_sum is None else prob_sum + prob
    report = metrics(prob_sum / len(loaded), y_ref, classes)
    report.update({"data": str(spec), "split": split, "tta": tta, "members": members, "classes": classes})
    return report


def class_mismatch(checkpoint: str, trained_on: list[str], now: list[str], spec: str) -> str:
    """Why a checkpoint's classes and a dataset's do not line up, in plain words (one line)."""

    def few(names: list[str]) -> str:
        shown = ", ".join(f"'{n}'" for n in names[:4])
        return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")

    if len(trained_on) != len(now):
        extra = [c for c in now if c not in trained_on]
        missing = [c for c in trained_on if c not in now]
        detail = "; ".join(
            ([f"only in the data: {few(extra)}"] if extra else [])
            + ([f"only in the checkpoint: {few(missing)}"] if missing else [])
        )
        return f"the checkpoint {checkpoint} has {len(trained_on)} classes but the data {spec} has {len(now)}" + (
            f" ({detail})" if detail else ""
        )
    i = next(i for i, (a, b) in enumerate(zip(trained_on, now)) if a != b)
    how = "in a different order" if sorted(trained_on) == sorted(now) else "with different names"
    return (
        f"the checkpoint {checkpoint} and the data {spec} have {len(now)} classes each but {how}: class {i} is "
        f"'{trained_on[i]}' in the checkpoint and '{now[i]}' in the data; the data differs from the training data"
    )


def confusion_title(report: dict[str, Any], title: str = "") -> str:
    """Two lines: what was evaluated (the model, or the ensemble's members) and on what, with which TTA."""
    models = [m["model"] for m in report.get("members", [])]
    if not title:
        names = ", ".join(models[:3]) + (f" and {len(models) - 3} more" if len(models) > 3 else "")
        title = models[0] if len(models) == 1 else f"ensemble of {len(models)}: {names}"
    data = str(report.get("data", "?"))
    if len(data) > 44:  # a long folder path would run off the figure: keep both ends
        data = data[:18] + "..." + data[-23:]
    split = report.get("split", "test")
    return f"{title}: top-1 {100 * report['top1']:.2f}%\n{data} [{split}], TTA {report.get('tta', 'none')}"


def plot_confusion(report: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """The confusion matrix (row-normalized colours, counts in the cells); the title names the model (or
    `title`), the data, the split and the TTA mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnlab.fileio import atomic_path

    cm = torch.tensor(report["confusion"], dtype=torch.float64)
    norm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    classes = report.get("classes") or [str(i) for i in range(len(cm))]
    n = len(cm)
    # 5.5 inches at least: the two title lines (model; data, split, TTA) fit above a 2-class matrix
    fig, ax = plt.subplots(figsize=(max(5.5, 0.45 * n + 2), max(3.5, 0.45 * n + 1.5)))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(confusion_title(report, title), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")  # a long title widens, not clips
    plt.close(fig)
    return Path(path)


@torch.no_grad()
def evaluate_loader(
    model: nn.Module, loader: Any, recipe: Any, device: torch.device, d: Any, topk: int = 5
) -> dict[str, float]:
    """Loss, top-1 and top-k accuracy over a cnnlab.data.Loader (summed over ranks under DDP): the training loop's
    validation and final test. `recipe` gives the precision and memory layout, `d` the process group."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, topk, n
    channels_last = use_channels_last(recipe, device)
    for x, y in loader:
        x, y = to_device(x, y, device, channels_last)
        with autocast(recipe.precision, device):
            logits = logits_of(model(x)).float()
        k = min(topk, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
        sums[1] += (top[:, 0] == y).sum()
        sums[2] += (top == y[:, None]).any(dim=1).sum()
        sums[3] += y.numel()
    sums = ddp.sum_tensor(d, sums)
    if was_training:  # the caller's train_mode hook, if any, runs after this
        model.train()
    n = max(1.0, float(sums[3]))
    return {"loss": float(sums[0]) / n, "top1": float(sums[1]) / n, "top5": float(sums[2]) / n, "n": int(sums[3])}
