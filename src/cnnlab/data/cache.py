"""The uint8 cache: every source is decoded once into memory-mappable .npy files.

An entry is a directory `<root>/<kind>-<name>-<size>px-<key>/` holding `<split>.x.npy` (uint8 N,C,H,W),
`<split>.y.npy` (int64) and `meta.json`; the key hashes the source kind, its path, the resolution, the
reader's version and a fingerprint of the content. Entries are built in a temporary directory and renamed
into place (atomic on POSIX), so a crash or a concurrent run never leaves a half-written entry.
Loading maps the files (copy-on-write), so later epochs and runs read pages, never decode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Bump to invalidate every cache entry when the layout changes.
FORMAT_VERSION = 1


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $CNNLAB_CACHE, else ~/.cache/cnnlab."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CNNLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnnlab"


def entry_name(kind: str, label: str, size: int | None, parts: dict) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, "kind": kind, **parts}, sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:40] or kind
    return f"{kind}-{slug}-{size or 'native'}px-{key}"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.iterdir():
        if p.is_file():
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def build(entry: Path, writer: Callable[[Path], None]) -> Path:
    """Create `entry` atomically: `writer(tmpdir)` fills a temporary directory which is then renamed."""
    if (entry / "meta.json").is_file():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        writer(tmp)
        _fsync_tree(tmp)
        try:
            os.replace(tmp, entry)
        except OSError:
            # Another process finished the same entry first; its content is identical, keep it.
            if not (entry / "meta.json").is_file():
                raise
        _fsync_dir(entry.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return entry


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def open_writer(path: Path, shape: tuple[int, ...], dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """A writable memmap .npy of `shape` (a regular array for empty shapes, which cannot be mapped)."""
    if 0 in shape:
        return np.zeros(shape, dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def finish(path: Path, arr: np.ndarray, n: int | None = None) -> None:
    """Flush a writer from `open_writer`; with `n`, keep only the first n rows (skipped images)."""
    if isinstance(arr, np.memmap):
        arr.flush()
    if n is None or n == len(arr):
        if not isinstance(arr, np.memmap):
            np.save(path, arr)
        return
    # Fewer rows than planned: rewrite the kept prefix (rare: only when files were skipped).
    # Write beside and rename, so the mapped original is never truncated under a live mapping.
    tmp = path.with_name(path.name + ".part.npy")
    np.save(tmp, arr[:n])
    os.replace(tmp, path)


def load(path: Path) -> np.ndarray:
    """Map a cached array; copy-on-write so torch.from_numpy gets a writable view without copying."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.size == 0:
        return np.load(path, allow_pickle=False)
    return np.load(path, mmap_mode="c", allow_pickle=False)
