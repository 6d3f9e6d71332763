"""`cnnlab predict CHECKPOINT IMAGE...`: the top-k classes of each image, by name.

An unreadable image (missing, not an image, truncated, a decompression bomb) does not stop the others: it is
reported on one line and skipped, the readable ones are classified, and the exit code is 2. When no image is
readable the command fails with one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "classify image files with a trained checkpoint or a `cnnlab export` ONNX file (top-k class names)"
EPILOG = (
    "An unreadable image (missing, not an image, truncated, a decompression bomb) is reported on one line on "
    "stderr and skipped; the other images are still classified and the exit code is then 2."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument(
        "checkpoint",
        help="a run directory (its best checkpoint), a .safetensors checkpoint, or a .onnx file from cnnlab export "
        "(run by onnxruntime, preprocessed as its metadata says)",
    )
    p.add_argument("images", nargs="+", help="image files (png, jpg, ...); unreadable ones are skipped, exit code 2")
    p.add_argument("-k", "--topk", type=int, default=5, help="how many classes to print (default 5)")
    p.add_argument("--tta", default="none", help="none, flip, 10crop or multiscale")


def load_image(path: Path, in_chans: int, size: int):  # noqa: ANN201 - a torch tensor; torch imports lazily
    """An image file as a uint8 (1, C, size, size) tensor; CnnlabError (one line) when it cannot be read."""
    import warnings

    import numpy as np
    import torch
    from PIL import Image

    from cnnlab.data.sources.folder import read_rgb, skip_reason
    from cnnlab.errors import CnnlabError

    if not path.exists():
        raise CnnlabError(f"image not found: {path}")
    if not path.is_file():
        raise CnnlabError(f"{path}: is a directory, not an image file")
    try:
        with warnings.catch_warnings():
            # read_rgb refuses what PIL only warns about; its warning would print a second, multi-line report.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = read_rgb(path, size)  # as the folder loader reads training images: checked, 8-bit RGB
        im = im.convert("L") if in_chans == 1 else im
        # As cnnlab.data prepares training images: shorter side to `size`, then the centre crop.
        scale = size / min(im.size)
        w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
        im = im.resize((w, h), Image.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, bomb errors, ...
        raise CnnlabError(f"{path}: not a readable image ({skip_reason(e)})") from None
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]


def _load_images(paths: list[str], in_chans: int, size: int) -> tuple[list[str], list]:
    """(readable paths, their tensors); each unreadable one is reported on one line and left out."""
    from cnnlab.errors import CnnlabError

    kept, tensors, errors = [], [], []
    for p in paths:
        try:
            tensors.append(load_image(Path(p), in_chans, size))
            kept.append(p)
        except CnnlabError as e:
            errors.append(str(e))
    if not tensors:  # nothing to classify: one error line, as for any bad input
        more = f" (and {len(errors) - 1} more unreadable images)" if len(errors) > 1 else ""
        raise CnnlabError(errors[0] + more)
    for msg in errors:
        sys.stderr.write(f"cnnlab predict: warning: skipped {msg}\n")
    return kept, tensors


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.errors import CnnlabError
    from cnnlab.train.evaluate import check_tta, load_checkpoint, normalize, predict_proba

    check_tta(args.tta)
    if args.topk < 1:
        raise CnnlabError(f"--topk must be at least 1, got {args.topk}")
    if Path(args.checkpoint).suffix.lower() == ".onnx":
        from cnnlab.export.runtime import load_onnx

        onnx_model = load_onnx(args.checkpoint)  # an nn.Module over onnxruntime: the same path from here on
        model, meta = onnx_model.module, onnx_model.meta
        if meta["height"] != meta["width"]:
            raise CnnlabError(f"{args.checkpoint}: takes {meta['height']}x{meta['width']} input; predict crops squares")
    else:
        ck = load_checkpoint(args.checkpoint)
        model, meta = ck.model, ck.meta
    paths, tensors = _load_images(args.images, int(meta["in_chans"]), int(meta["image_size"]))
    x = torch.cat(tensors)
    prob = predict_proba(model, normalize(x, meta["mean"], meta["std"]), args.tta, name=meta["model"])
    classes = meta.get("classes") or [str(i) for i in range(prob.shape[1])]
    k = min(args.topk, prob.shape[1])
    for path, p in zip(paths, prob):
        vals, idx = p.topk(k)
        ranked = ", ".join(f"{classes[i]} {100 * v:.1f}%" for v, i in zip(vals.tolist(), idx.tolist()))
        print(f"{path}: {ranked}")
    return 2 if len(paths) < len(args.images) else 0
