"""`cnnlab predict CHECKPOINT IMAGE...`: the top-k classes of each image, by name."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "classify image files with a trained checkpoint (top-k class names)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a .safetensors checkpoint")
    p.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    p.add_argument("-k", "--topk", type=int, default=5, help="how many classes to print (default 5)")
    p.add_argument("--tta", default="none", help="none, flip, 10crop or multiscale")


def load_image(path: Path, in_chans: int, size: int):
    """An image file as a uint8 (1, C, size, size) tensor."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from cnnlab.errors import CnnlabError

    if not path.is_file():
        raise CnnlabError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if in_chans == 1 else "RGB")
            # As cnnlab.data prepares training images: shorter side to `size`, then the centre crop.
            scale = size / min(im.size)
            w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
            im = im.resize((w, h), Image.BILINEAR)
            left, top = (w - size) // 2, (h - size) // 2
            arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise CnnlabError(f"{path}: not a readable image ({e})") from None
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.errors import CnnlabError
    from cnnlab.train.evaluate import check_tta, load_checkpoint, normalize, predict_proba

    check_tta(args.tta)
    if args.topk < 1:
        raise CnnlabError(f"--topk must be at least 1, got {args.topk}")
    ck = load_checkpoint(args.checkpoint)
    meta = ck.meta
    x = torch.cat([load_image(Path(p), int(meta["in_chans"]), int(meta["image_size"])) for p in args.images])
    prob = predict_proba(ck.model, normalize(x, meta["mean"], meta["std"]), args.tta, name=meta["model"])
    classes = meta.get("classes") or [str(i) for i in range(prob.shape[1])]
    k = min(args.topk, prob.shape[1])
    for path, p in zip(args.images, prob):
        vals, idx = p.topk(k)
        ranked = ", ".join(f"{classes[i]} {100 * v:.1f}%" for v, i in zip(vals.tolist(), idx.tolist()))
        print(f"{path}: {ranked}")
    return 0
