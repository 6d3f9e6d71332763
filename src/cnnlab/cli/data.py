"""`cnnlab data show SPEC --out grid.png` and `cnnlab data info SPEC`: look at a dataset through its cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "inspect a dataset spec (shapes, npz:, folder:, cifar10:, cifar100:, mnist:): info, sample grid"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="draw a labelled grid of samples to a PNG")
    info = sub.add_parser("info", help="print counts, classes, image shape, mean and std")
    for q in (show, info):
        q.add_argument("spec", help="dataset spec, e.g. shapes, shapes:size=64, npz:../shared/data/cifar10.npz")
        q.add_argument("--size", type=int, default=None, help="resolution in pixels (default: the source's)")
        q.add_argument("--cache-dir", default=None, help="cache directory (default $CNNLAB_CACHE or ~/.cache/cnnlab)")
        q.add_argument("--strict", action="store_true", help="fail on unreadable files instead of skipping them")
        q.add_argument("--val-fraction", type=float, default=0.1, help="share of training data carved to val")
        q.add_argument("--val-seed", type=int, default=0)
        q.add_argument("--no-progress", action="store_true", help="no progress bar while a cache is built")
    show.add_argument("--out", required=True, help="output PNG path")
    show.add_argument("--split", default="train", choices=("train", "val", "test"))
    show.add_argument("-n", "--num", type=int, default=40, help="number of images (default 40)")
    show.add_argument("--cols", type=int, default=10)
    show.add_argument("--augment", default="none", help="augment string or preset to apply before drawing")
    show.add_argument("--seed", type=int, default=0)
    info.add_argument("--json", action="store_true", help="print JSON")


def _load(args: argparse.Namespace, split: str):  # noqa: ANN202
    import warnings

    from cnnlab import data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", data.DataWarning)
        ds = data.load(
            args.spec,
            split=split,
            size=args.size,
            val_fraction=args.val_fraction,
            val_seed=args.val_seed,
            cache_dir=args.cache_dir,
            strict=args.strict,
        )
    for w in caught:
        if issubclass(w.category, data.DataWarning):
            print(f"warning: {w.message}")
    return ds


def pick(y: list[int], num_classes: int, n: int) -> list[int]:
    """Indices of n samples, round-robin over classes so every class appears."""
    per_class: list[list[int]] = [[] for _ in range(num_classes)]
    for i, label in enumerate(y):
        if len(per_class[label]) < n:
            per_class[label].append(i)
    out = []
    for k in range(n):
        for c in range(num_classes):
            if k < len(per_class[c]) and len(out) < n:
                out.append(per_class[c][k])
    return out


def grid_image(images, labels: list[str], cols: int):  # noqa: ANN001, ANN201
    """uint8 (N, C, H, W) tensor + one label each -> a PIL image with the label under every tile."""
    from PIL import Image, ImageDraw, ImageFont

    n, c, h, w = images.shape
    zoom = max(1, -(-64 // max(h, w)))  # tiles at least 64 px, so 32 px images stay readable
    tile = w * zoom
    font = ImageFont.load_default()
    label_h = 14
    rows = -(-n // cols)
    canvas = Image.new("RGB", (cols * (tile + 4) + 4, rows * (h * zoom + label_h + 4) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        arr = images[i].permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[..., 0] if c == 1 else arr).convert("RGB")
        img = img.resize((tile, h * zoom), Image.NEAREST)
        r, q = divmod(i, cols)
        x0, y0 = 4 + q * (tile + 4), 4 + r * (h * zoom + label_h + 4)
        canvas.paste(img, (x0, y0))
        text = labels[i]
        while len(text) > 1 and draw.textlength(text, font=font) > tile:
            text = text[:-1]
        draw.text((x0, y0 + h * zoom + 1), text, fill="black", font=font)
    return canvas


def _save_png(img, out: Path) -> None:  # noqa: ANN001
    from cnnlab.errors import CnnlabError

    if out.is_dir():
        raise CnnlabError(f"--out {out} is a directory; give a file name, e.g. {out / 'grid.png'}")
    try:
        _write_png(img, out)
    except (FileExistsError, NotADirectoryError):
        raise CnnlabError(f"cannot write {out}: a file stands where a folder of its path should be") from None
    except OSError as e:  # no permission, a full disk: one line
        raise CnnlabError(f"cannot write {out}: {e.strerror or e}") from None


def _write_png(img, out: Path) -> None:  # noqa: ANN001
    from cnnlab.fileio import atomic_path  # temp file with the user's umask, fsync, rename

    with atomic_path(out) as tmp:
        img.save(tmp, format="PNG")


def show(args: argparse.Namespace) -> int:
    import torch

    from cnnlab import data

    if args.num < 1 or args.cols < 1:
        raise ValueError("--num and --cols must be >= 1")
    ds = _load(args, args.split)
    idx = torch.tensor(pick(ds.y.tolist(), ds.num_classes, args.num), dtype=torch.long)
    if len(idx) == 0:
        raise ValueError(f"{ds.spec} {args.split} split is empty")
    x = ds.x[idx]
    if args.augment not in ("none", ""):
        aug = data.Augment(args.augment, ds.mean, ds.std, ds.eigval, ds.eigvec)
        xf = aug(x, torch.Generator().manual_seed(args.seed), normalize=False)
        x = (xf.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    labels = [ds.classes[int(i)] for i in ds.y[idx]]
    out = Path(args.out)
    _save_png(grid_image(x, labels, min(args.cols, len(idx))), out)
    print(f"wrote {out} ({len(idx)} {args.split} images of {ds.spec}, {x.shape[-1]}x{x.shape[-2]} px)")
    return 0


def info(args: argparse.Namespace) -> int:
    from cnnlab.data.dataset import available_splits

    # Ask which splits exist rather than read error messages: a bad file must fail here, not read as "no split".
    splits = available_splits(args.spec, size=args.size, val_fraction=args.val_fraction, cache_dir=args.cache_dir)
    rows = {split: _load(args, split) for split in splits}
    first = rows["train"]
    report = {
        "spec": first.spec,
        "classes": list(first.classes),
        "image_shape": list(first.image_shape),
        "counts": {s: len(d) for s, d in rows.items()},
        "per_class": {s: d.counts() for s, d in rows.items()},
        "mean": [round(v, 4) for v in first.mean],
        "std": [round(v, 4) for v in first.std],
        "cache": str(first.cache_path),
        "skipped": len(first.skipped),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    c, h, w = first.image_shape
    print(f"{first.spec}: {c}x{h}x{w} uint8, {len(first.classes)} classes")
    print("  " + ", ".join(f"{s} {n:,}" for s, n in report["counts"].items()))
    print(f"  classes: {', '.join(first.classes[:20])}{' ...' if len(first.classes) > 20 else ''}")
    print(f"  mean (train, 0-1): {', '.join(f'{v:.4f}' for v in first.mean)}")
    print(f"  std  (train, 0-1): {', '.join(f'{v:.4f}' for v in first.std)}")
    if first.skipped:
        print(f"  skipped files: {len(first.skipped)}")
    print(f"  cache: {first.cache_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    return show(args) if args.action == "show" else info(args)
