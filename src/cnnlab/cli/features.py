"""`cnnlab features CHECKPOINT --data SPEC --out feats.npz`: penultimate features, to fit one's own classifier."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

HELP = "extract penultimate features (the input of the final classifier layer) of a dataset to an .npz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a .safetensors checkpoint")
    p.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--out", required=True, help="output .npz: features (N, D) float32, labels (N,), class_names")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")


@torch.no_grad()
def extract_features(
    model: nn.Module,
    x_u8: torch.Tensor,
    mean: Any,
    std: Any,
    batch_size: int = 256,
    device: Any = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """(N, D) float32: what the final classifier layer (`head.fc`) receives, in eval mode.

    For the usual pool-then-linear head that is the globally pooled output of `features(x)`; for VGG/AlexNet
    heads it is the last hidden fully connected layer; a 1x1-conv final layer's input map is averaged.
    `progress` draws a bar on stderr (one line at the end when stderr is not a terminal).
    """
    from cnnlab.train.progress import Progress

    fc = model.head.fc
    got: list[torch.Tensor] = []

    def grab(module: nn.Module, inputs: tuple) -> None:
        z = inputs[0]
        got.append((z.mean(dim=(2, 3)) if z.ndim == 4 else z.flatten(1)).float().cpu())

    from cnnlab.train.evaluate import normalize  # the training runs' own normalization

    model.eval()
    name = getattr(model, "model_name", "") or type(model).__name__
    bar = Progress(-(-len(x_u8) // batch_size), f"features {name}", progress)
    handle = fc.register_forward_pre_hook(grab)
    try:
        for a in range(0, len(x_u8), batch_size):
            xb = x_u8[a : a + batch_size]
            model(normalize(xb.to(device), list(mean), list(std)))
            bar.update(len(xb))
    finally:
        handle.remove()
    bar.close()
    return torch.cat(got) if got else torch.zeros(0, 0)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from cnnlab.data.dataset import load
    from cnnlab.errors import CnnlabError
    from cnnlab.fileio import atomic_path
    from cnnlab.train.ddp import pick_device
    from cnnlab.train.evaluate import load_checkpoint

    out = Path(args.out)
    if out.suffix != ".npz":
        raise CnnlabError(f"--out must end in .npz, got {out}")
    if args.batch_size < 1:
        raise CnnlabError(f"--batch-size must be positive, got {args.batch_size}")
    device = pick_device(args.device)
    loaded = load_checkpoint(args.checkpoint, device=device)
    meta = loaded.meta
    spec = args.data or meta.get("data")
    if not spec:
        raise CnnlabError(f"{loaded.path}: no dataset recorded; pass --data SPEC")
    ds = load(spec, split=args.split, size=int(meta.get("image_size") or 0) or None)
    if int(ds.x.shape[1]) != int(meta["in_chans"]):
        raise CnnlabError(f"{spec} has {ds.x.shape[1]} channels but the model takes {meta['in_chans']}")
    feats = extract_features(
        loaded.model, ds.x, meta["mean"], meta["std"], args.batch_size, device, progress=not args.no_progress
    )
    # A file object: given a name, np.savez would append .npz to the temporary file's name.
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            features=feats.numpy(),
            labels=ds.y.numpy(),
            class_names=np.array(list(ds.classes)),
            model_classes=np.array(list(meta.get("classes", []))),
        )
    print(f"{out}: {feats.shape[0]} x {feats.shape[1]} features of {spec} ({args.split}), from {loaded.path}")
    return 0
