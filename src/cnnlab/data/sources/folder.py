"""`folder:PATH`: the ImageFolder layout, PATH/[train|val|test/]class/image.

With train/ (and optionally val/, test/) subfolders those are the splits; otherwise PATH's class folders
are split by a seeded hash of each file's relative path (TEST_FRACTION to test), which stays stable when
files are added. Every non-hidden file is tried: corrupt, truncated, zero-byte and non-image files and
decompression bombs are skipped and reported, or fail the load with strict=True. L, LA, P, RGBA, CMYK,
16-bit and float images are converted to 8-bit RGB. Images are resized (shorter side to `size`, centre crop)
and written straight into the memory-mapped cache, so memory stays bounded for any folder size.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.errors import CnnlabError

TEST_FRACTION = 0.2
DEFAULT_SIZE = 256  # shorter side when images differ in size; the ImageNet convention (crop 224 from 256)
SPLIT_DIRS = ("train", "val", "test")


@dataclass
class Listing:
    classes: list[str]
    splits: dict[str, list[tuple[Path, int]]]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(d: Path) -> list[Path]:
    # Recursive, like torchvision's ImageFolder; hidden files (.DS_Store, ._x) are not images.
    found = (p for p in d.rglob("*") if p.is_file())
    return sorted(p for p in found if not any(s.startswith(".") for s in p.relative_to(d).parts))


def _test_by_hash(rel: str) -> bool:
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "little")
    return h / 2**64 < TEST_FRACTION


def list_folder(root: Path) -> Listing:
    if not root.is_dir():
        raise CnnlabError(f"folder: {root} is not a directory")
    has_splits = (root / "train").is_dir()
    split_roots = {s: root / s for s in SPLIT_DIRS if (root / s).is_dir()} if has_splits else {"": root}
    base = split_roots["train"] if has_splits else root
    classes = [d.name for d in _class_dirs(base)]
    if not classes:
        raise CnnlabError(f"folder: {base} has no class folders (expected {base}/<class>/<image>)")
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, list[tuple[Path, int]]] = {s: [] for s in (SPLIT_DIRS if has_splits else ("train", "test"))}
    for split, sroot in split_roots.items():
        for d in _class_dirs(sroot):
            if d.name not in index:
                raise CnnlabError(f"folder: class '{d.name}' in {sroot} is not among the training classes")
            found = _files(d)
            if not found:
                raise CnnlabError(f"folder: class folder {d} is empty")
            for p in found:
                if has_splits:
                    splits[split].append((p, index[d.name]))
                else:
                    rel = p.relative_to(root).as_posix()
                    splits["test" if _test_by_hash(rel) else "train"].append((p, index[d.name]))
    return Listing(classes, {s: v for s, v in splits.items() if v or s == "train"})


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode; 16-bit and float images are rescaled, not clipped."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        # 16-bit data (and 32-bit 'I', which PNG uses for 16-bit gray) spans 0..65535.
        img = Image.fromarray(np.clip(a / 257.0 + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0  # float in [0,1] or already in [0,255]
        img = Image.fromarray(np.clip(np.nan_to_num(a) * scale + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # keeps a transparency index, then drops alpha below
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def check_bomb(img: Image.Image) -> None:
    # PIL raises past twice MAX_IMAGE_PIXELS but only warns past it; a warning would let the bomb through, and
    # turning warnings into errors with warnings.catch_warnings is not thread-safe, so check the count here.
    limit = Image.MAX_IMAGE_PIXELS
    w, h = img.size
    if limit and w * h > limit:
        raise Image.DecompressionBombError(f"Image size ({w * h} pixels) exceeds limit of {limit} pixels")


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only; raises on non-images and decompression bombs."""
    with Image.open(path) as img:
        check_bomb(img)
        return img.size


def read_rgb(path: Path, size: int | None = None) -> Image.Image:
    """A decoded 8-bit RGB image; `size` lets a large JPEG decode at a reduced scale (both sides stay >= size).

    Raises on bad files (PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...): callers skip
    the file or report it, with `skip_reason(e)`.
    """
    with Image.open(path) as img:
        check_bomb(img)
        if size is not None and img.format == "JPEG":
            img.draft("RGB", (size, size))  # a reduced DCT scale: decoding a 24 MP photo for 256 px is waste
        img.load()
        return to_rgb(img)


def decode(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (3, size, size): shorter side to `size`, centre crop. Raises on bad files."""
    img = read_rgb(path, size)
    w2, h2 = img.size
    side = min(w2, h2)
    left, top = (w2 - side) / 2, (h2 - side) / 2
    out = img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
    return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)


def skip_reason(e: BaseException) -> str:
    """One line saying why an image could not be read."""
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb ({str(e).split('.')[0]})"
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{type(e).__name__}: {msg}"


def choose_size(listing: Listing, sample: int = 256) -> int:
    """The common square size if the images sampled (up to `sample`, evenly spaced) share one, else
    DEFAULT_SIZE. A sample, because opening every header would cost a third of the whole decode; an image
    of another size is still resized to the chosen one, so a wrong guess costs only resolution."""
    items = [p for split in listing.splits.values() for p, _ in split]
    step = max(1, len(items) // sample)
    sizes: Counter[tuple[int, int]] = Counter()
    for p in items[::step]:
        try:
            sizes[header_size(p)] += 1
        except Exception:  # noqa: BLE001 - unreadable files are reported by the decode pass
            continue
    if len(sizes) == 1:
        (w, h), _ = sizes.most_common(1)[0]
        if w == h:
            return w
    return DEFAULT_SIZE


def decode_into(
    items: list[tuple[Path, int]],
    size: int,
    out: np.ndarray,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode `items` into `out` ((N, 3, size, size), e.g. a memmap) in order, skipping failures.

    Returns the labels of the images kept (packed at the front of `out`) and the skipped (path, reason).
    `progress(1)` is called after each file, kept or skipped.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    labels, skipped = [], []
    kept = 0

    def work(item: tuple[Path, int]) -> np.ndarray | BaseException:
        try:
            return decode(item[0], size)
        except Exception as e:  # noqa: BLE001 - any decoder failure means "skip this file"
            return e

    # PIL releases the GIL while decoding, so threads scale without pickling images between processes.
    with ThreadPoolExecutor(workers) as pool:
        for (path, label), res in zip(items, pool.map(work, items, chunksize=16)):
            if progress is not None:
                progress(1)
            if isinstance(res, BaseException):
                skipped.append((str(path), skip_reason(res)))
                continue
            out[kept] = res
            labels.append(label)
            kept += 1
    return np.asarray(labels, np.int64), skipped


def fingerprint_items(listing: Listing) -> list[str]:
    """What the cache key covers: every file's relative path, size and mtime."""
    rows = []
    for split, items in sorted(listing.splits.items()):
        for p, label in items:
            st = p.stat()
            rows.append(f"{split}\0{p}\0{label}\0{st.st_size}\0{st.st_mtime_ns}")
    return rows
