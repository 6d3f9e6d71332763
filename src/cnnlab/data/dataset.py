"""`load(spec, split=...)`: a Dataset whose images are a memory-mapped uint8 tensor from the cache.

The validation split is carved from the training data (stratified, seeded), never from the test set; the
carve is cached too. mean, std and the PCA colour basis are those of the training split (the part left
after carving), in [0, 1] units, and every split of a load carries them so evaluation normalizes alike.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data import cache, shapes
from cnnlab.data.sources import Raw, fingerprint
from cnnlab.data.spec import Spec, parse_spec
from cnnlab.errors import CnnlabError

if TYPE_CHECKING:
    from cnnlab.train.progress import Progress

SPLITS = ("train", "val", "test")
MAX_SIZE = 4096  # pixels; past this one image alone is 50 MB of cache and a resize chunk would not fit memory
_SHOW_SKIPPED = 3  # first paths named in a skip report
_CHUNK_ELEMS = 1 << 25  # floats per resize chunk (128 MB), whatever the resolution
# Cache entries whose skipped files were reported by this process: load() runs once per split, warn once.
_REPORTED: set[str] = set()


class DataWarning(UserWarning):
    """Files were skipped while building a cache entry."""


@dataclass
class Dataset:
    """One split: `x` uint8 (N, C, H, W), `y` int64 (N,), and the training split's statistics."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of the training split, in [0, 1] units
    std: tuple[float, ...]
    eigval: torch.Tensor  # (C,) eigenvalues of the training split's colour covariance, descending
    eigvec: torch.Tensor  # (C, C) matching eigenvectors as columns
    spec: str = ""
    split: str = "train"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_path: Path | None = None

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def counts(self) -> list[int]:
        return torch.bincount(self.y, minlength=self.num_classes).tolist()


# ---------------------------------------------------------------------------------------------- building


def resize_uint8(
    x: np.ndarray, size: int, out: np.ndarray | None = None, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """uint8 (N, C, H, W) -> (N, C, size, size): shorter side to `size` (antialiased bilinear), centre crop.

    `out`, when given (e.g. a memory-mapped cache file), is filled in place, so memory stays bounded.
    `progress(k)` is called as each chunk of k images is written (CIFAR-10 to 224 px takes about a minute).
    """
    n, c, h, w = x.shape
    if (h, w) == (size, size) and out is None:
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    out = np.empty((n, c, size, size), np.uint8) if out is None else out
    chunk = max(1, _CHUNK_ELEMS // (c * max(h * w, nh * nw)))
    for s in range(0, n, chunk):
        t = torch.from_numpy(np.ascontiguousarray(x[s : s + chunk])).float()
        if (h, w) != (size, size):
            t = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
            t = t[..., top : top + size, left : left + size]
        out[s : s + chunk] = t.round_().clamp_(0, 255).to(torch.uint8).numpy()
        if progress is not None:
            progress(len(t))
    return out


def _build_bar(images: int, label: str, size: int | None) -> Progress:
    """A bar over a cache build's slow loop (decoding, resizing, drawing images): on a terminal only, and only
    once the build has taken a second, so a log, a quick build and a cache hit print nothing."""
    from cnnlab.train.progress import Progress

    desc = f"caching {label}" + (f" at {size}px" if size else "")
    return Progress(images, desc, enabled=images > 0, summary=False, delay=1.0)


def _counter(bar: Progress) -> Callable[[int], None]:
    """The `progress(k)` callback of the loops below: k images done."""
    return lambda k: bar.update(k, steps=k)


def _write_raw(raw: Raw, size: int | None, tmp: Path, source: str, label: str) -> None:
    dims = {s: (len(x), x.shape[1], size or x.shape[2], size or x.shape[3]) for s, (x, _) in raw.splits.items()}
    cache.check_space(tmp.parent, sum(int(np.prod(v)) for v in dims.values()), source)
    with _build_bar(sum(v[0] for v in dims.values()) if size is not None else 0, label, size) as bar:
        for split, (x, y) in raw.splits.items():
            if size is None:
                np.save(tmp / f"{split}.x.npy", np.ascontiguousarray(x))
            else:  # straight into the mapped file: a resized copy of MNIST at 224 px would be 3 GB of memory
                out = cache.open_writer(tmp / f"{split}.x.npy", dims[split])
                cache.finish(tmp / f"{split}.x.npy", resize_uint8(x, size, out=out, progress=_counter(bar)))
            np.save(tmp / f"{split}.y.npy", y.astype(np.int64))
    _write_meta(tmp, source, raw.classes, {s: len(y) for s, (_, y) in raw.splits.items()}, raw.skipped)


def _write_meta(tmp: Path, source: str, classes: list[str], counts: dict, skipped: list) -> None:
    cache.write_json(
        tmp / "meta.json", {"source": source, "classes": list(classes), "counts": counts, "skipped": skipped}
    )


def _shapes_entry(spec: Spec, size: int | None, root: Path) -> Path:
    opts = dict(spec.options)
    if size is not None:
        opts["size"] = size
    shapes.check_options(opts)  # before anything is allocated: size=100000 would not fit any memory
    res = int(opts["size"])
    name = cache.entry_name("shapes", "shapes", res, {"options": opts, "version": shapes.VERSION})

    def writer(tmp: Path) -> None:
        n_images = int(opts["train"]) + int(opts["test"])
        cache.check_space(root, shapes.image_bytes(n_images, res), str(Spec("shapes", None, opts)))
        counts = {}
        with _build_bar(n_images, "shapes", res) as bar:
            for split in ("train", "test"):
                n = int(opts[split])
                x = cache.open_writer(tmp / f"{split}.x.npy", (n, 3, res, res))
                _, y = shapes.generate(
                    n,
                    res,
                    split=split,
                    seed=int(opts["seed"]),
                    difficulty=float(opts["difficulty"]),
                    num_classes=int(opts["classes"]),
                    out=x,
                    progress=_counter(bar),
                )
                cache.finish(tmp / f"{split}.x.npy", x)
                np.save(tmp / f"{split}.y.npy", y)
                counts[split] = n
        _write_meta(tmp, str(Spec("shapes", None, opts)), list(shapes.CLASSES[: int(opts["classes"])]), counts, [])

    return cache.build(root / name, writer)


def _file_entry(spec: Spec, size: int | None, root: Path) -> Path:
    from cnnlab.data.sources import cifar, mnist, npz

    path = spec.path.resolve()  # type: ignore[union-attr]
    if spec.kind == "npz":
        files, read, version = npz.files(path), lambda: npz.read(path), npz.VERSION
    elif spec.kind == "mnist":
        files, read, version = mnist.files(path), lambda: mnist.read(path), mnist.VERSION
    else:
        files, read, version = cifar.files(spec.kind, path), lambda: cifar.read(spec.kind, path), cifar.VERSION
    parts = {"path": str(path), "size": size, "content": fingerprint(files), "reader": version}
    name = cache.entry_name(spec.kind, path.stem, size, parts)
    return cache.build(root / name, lambda tmp: _write_raw(read(), size, tmp, str(spec), path.stem))


def _folder_entry(spec: Spec, size: int | None, root: Path) -> Path:
    import hashlib

    from cnnlab.data.sources import folder

    path = spec.path.resolve()  # type: ignore[union-attr]
    listing = folder.list_folder(path)
    content = hashlib.sha256("\n".join(folder.fingerprint_items(listing)).encode()).hexdigest()
    name = cache.entry_name("folder", path.name, size, {"path": str(path), "size": size, "content": content})

    def writer(tmp: Path) -> None:
        res = size if size is not None else folder.choose_size(listing)
        n_images = sum(len(items) for items in listing.splits.values())
        cache.check_space(root, n_images * 3 * res * res, str(spec))
        skipped: list[tuple[str, str]] = []
        counts = {}
        with _build_bar(n_images, path.name, res) as bar:
            for split, items in listing.splits.items():
                x = cache.open_writer(tmp / f"{split}.x.npy", (len(items), 3, res, res))
                y, sk = folder.decode_into(items, res, x, progress=_counter(bar))
                cache.finish(tmp / f"{split}.x.npy", x, len(y))
                np.save(tmp / f"{split}.y.npy", y)
                skipped += sk
                counts[split] = len(y)
        empty = sorted({listing.classes[lab] for _, lab in listing.splits["train"]} - _labels_present(tmp, listing))
        if empty:
            raise CnnlabError(f"folder: class '{empty[0]}' has no readable images in {path}")
        _write_meta(tmp, str(spec), listing.classes, counts, skipped)

    return cache.build(root / name, writer)


def _labels_present(tmp: Path, listing) -> set[str]:  # noqa: ANN001
    y = np.load(tmp / "train.y.npy")
    return {listing.classes[i] for i in np.unique(y)}


def _entry(spec: Spec, size: int | None, root: Path) -> Path:
    if spec.kind == "shapes":
        return _shapes_entry(spec, size, root)
    if spec.kind == "folder":
        return _folder_entry(spec, size, root)
    return _file_entry(spec, size, root)


# ---------------------------------------------------------------------------------------------- splits


def carve(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified seeded split of indices into (train, val): round(fraction * n_c) of each class to val."""
    g = np.random.default_rng(seed)
    key = g.random(len(y))
    order = np.lexsort((key, y))  # by class, random within class
    ys = y[order]
    starts = np.searchsorted(ys, ys, side="left")
    rank = np.arange(len(y)) - starts
    counts = np.bincount(y)
    take = np.round(counts * fraction).astype(np.int64)
    is_val = rank < take[ys]
    return np.sort(order[~is_val]), np.sort(order[is_val])


def channel_stats(x: np.ndarray, chunk: int = 2048) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """Per-channel mean and std and the eigen-decomposition of the colour covariance, in [0, 1] units."""
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    ss = torch.zeros(c, c, dtype=torch.float64)
    n = 0
    for i in range(0, len(x), chunk):
        a = torch.from_numpy(np.asarray(x[i : i + chunk])).to(torch.float64).div_(255)
        a = a.transpose(0, 1).reshape(c, -1)  # (C, pixels)
        s += a.sum(1)
        ss += a @ a.T
        n += a.shape[1]
    if n == 0:
        raise CnnlabError("cannot compute statistics of an empty training split")
    mean = s / n
    cov = ss / n - torch.outer(mean, mean)
    eigval, eigvec = torch.linalg.eigh(cov)
    eigval, eigvec = eigval.flip(0).clamp(min=0), eigvec.flip(1)  # descending, as AlexNet lists them
    std = cov.diagonal().clamp(min=1e-12).sqrt()
    return mean.tolist(), std.tolist(), eigval.numpy(), eigvec.numpy()


def _split_dir(entry: Path, meta: dict, val_fraction: float, val_seed: int) -> Path:
    """Cache of the train/val carve and the training statistics."""
    carve_it = "val" not in meta["counts"] and val_fraction > 0
    tag = f"split-v{val_fraction:g}-s{val_seed}" if carve_it else "split-full"

    def writer(tmp: Path) -> None:
        x = cache.load(entry / "train.x.npy")
        y = np.load(entry / "train.y.npy")
        if carve_it:
            cache.check_space(entry, x.nbytes, f"the train/val carve of {meta['source']}")
            tr, va = carve(y, val_fraction, val_seed)
            for name, idx in (("train", tr), ("val", va)):
                out = cache.open_writer(tmp / f"{name}.x.npy", (len(idx), *x.shape[1:]))
                for s in range(0, len(idx), 4096):  # gather in chunks to bound memory
                    out[s : s + 4096] = x[idx[s : s + 4096]]
                cache.finish(tmp / f"{name}.x.npy", out)
                np.save(tmp / f"{name}.y.npy", y[idx])
            xs = cache.load(tmp / "train.x.npy")
        else:
            xs = x
        mean, std, eigval, eigvec = channel_stats(xs)
        cache.write_json(
            tmp / "meta.json",
            {"mean": mean, "std": std, "eigval": eigval.tolist(), "eigvec": eigvec.tolist(), "carved": carve_it},
        )

    return cache.build(entry / tag, writer)


def _skip_report(spec: str, skipped: list) -> str:
    first = "; ".join(f"{p} ({why})" for p, why in skipped[:_SHOW_SKIPPED])
    more = f"; and {len(skipped) - _SHOW_SKIPPED} more" if len(skipped) > _SHOW_SKIPPED else ""
    return f"{spec}: skipped {len(skipped)} unreadable file(s): {first}{more}"


def _check_args(split: str, size: int | None, val_fraction: float, val_seed: int = 0) -> None:
    if split not in SPLITS:
        from cnnlab.errors import UnknownNameError

        raise UnknownNameError("split", split, SPLITS)
    if size is not None and (not isinstance(size, int) or not 1 <= size <= MAX_SIZE):
        raise CnnlabError(f"size must be 1..{MAX_SIZE} pixels, got {size!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise CnnlabError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not isinstance(val_seed, int) or val_seed < 0:
        raise CnnlabError(f"val_seed must be an integer >= 0, got {val_seed!r}")


def _splits_of(meta: dict, val_fraction: float) -> tuple[str, ...]:
    own = meta["counts"]
    return tuple(s for s in SPLITS if s in own or (s == "val" and val_fraction > 0))


def available_splits(
    spec: str | Spec,
    size: int | None = None,
    val_fraction: float = 0.1,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[str, ...]:
    """The splits `load(spec, split=...)` can return, in SPLITS order: train always; val when the source has
    its own or val_fraction > 0 carves one; test when the source has one (an ImageNet-style folder of train/
    and val/ has none). Builds the cache entry if needed, so a following load() decodes nothing again.
    """
    s = parse_spec(spec)
    _check_args("train", size, val_fraction)
    entry = _entry(s, size, cache.cache_root(cache_dir))
    return _splits_of(cache.read_json(entry / "meta.json"), val_fraction)


def _report_skipped(spec: Spec, entry: Path, skipped: list, strict: bool) -> None:
    if not skipped:
        return
    report = _skip_report(str(spec), skipped)
    if strict:
        raise CnnlabError(report.replace("skipped", "strict: found", 1))
    if str(entry) not in _REPORTED:  # once per entry per process, not once per split loaded
        _REPORTED.add(str(entry))
        warnings.warn(report, DataWarning, stacklevel=3)


def load(
    spec: str | Spec,
    split: str = "train",
    size: int | None = None,
    val_fraction: float = 0.1,
    val_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    strict: bool = False,
) -> Dataset:
    """Load one split of a dataset spec, decoding into the cache on first use.

    size: resolution in pixels (shorter side, then centre crop); None keeps the source's own size (folders
    of mixed sizes: 256). val_fraction, val_seed: the stratified carve of the training data into train/val
    (ignored when the source has its own val split). strict: fail on unreadable files instead of skipping.
    Skipped files are reported as one DataWarning per cache entry per process, not once per split.
    A split the source lacks (see available_splits) raises CnnlabError.
    """
    s = parse_spec(spec)
    _check_args(split, size, val_fraction, val_seed)
    entry = _entry(s, size, cache.cache_root(cache_dir))
    meta = cache.read_json(entry / "meta.json")
    skipped = [tuple(t) for t in meta.get("skipped", [])]
    _report_skipped(s, entry, skipped, strict)
    if split not in _splits_of(meta, val_fraction):
        has = ", ".join(_splits_of(meta, val_fraction))
        fix = "; use val_fraction > 0 to carve one from the training data" if split == "val" else ""
        raise CnnlabError(f"{s} has no {split} split (it has {has}){fix}")
    sdir = _split_dir(entry, meta, val_fraction, val_seed)
    stats = cache.read_json(sdir / "meta.json")
    own = split != "train" and split in meta["counts"]  # the source's own val or test split
    where = sdir if stats["carved"] and not own else entry
    x = torch.from_numpy(cache.load(where / f"{split}.x.npy"))
    y = torch.from_numpy(np.load(where / f"{split}.y.npy"))
    return Dataset(
        x=x,
        y=y,
        classes=tuple(meta["classes"]),
        mean=tuple(stats["mean"]),
        std=tuple(stats["std"]),
        eigval=torch.tensor(stats["eigval"], dtype=torch.float32),
        eigvec=torch.tensor(stats["eigvec"], dtype=torch.float32),
        spec=str(s),
        split=split,
        skipped=skipped,
        cache_path=where,
    )
