"""The uint8 cache: every source is decoded once into memory-mappable .npy files.

An entry is a directory `<root>/<kind>-<name>-<size>px-<key>/` holding `<split>.x.npy` (uint8 N,C,H,W),
`<split>.y.npy` (int64) and `meta.json`; the key hashes the source kind, its path, the resolution, the
reader's version and a fingerprint of the content. Entries are built in a temporary directory and renamed
into place (atomic on POSIX), so a crash or a concurrent run never leaves a half-written entry.
Loading maps the files (copy-on-write), so later epochs and runs read pages, never decode.
A full disk stops the build with one line naming the cache directory (the temporary directory is removed), and
memory-mapped outputs have their blocks reserved first: write-back to a full disk would kill the process
with SIGBUS instead of raising.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnnlab.data.spec import expand_path
from cnnlab.errors import CnnlabError

# Bump to invalidate every cache entry when the layout changes.
FORMAT_VERSION = 1
MOVE_HINT = "point the cache elsewhere with $CNNLAB_CACHE (or --cache-dir)"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $CNNLAB_CACHE, else ~/.cache/cnnlab."""
    if cache_dir is not None:
        return expand_path(str(cache_dir), "cache directory")
    env = os.environ.get("CNNLAB_CACHE")
    return expand_path(env, "$CNNLAB_CACHE") if env else Path.home() / ".cache" / "cnnlab"


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
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    except OSError as e:  # read-only, no permission, full
        raise CnnlabError(f"cache: cannot create an entry in {entry.parent}: {e.strerror or e}; {MOVE_HINT}") from None
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
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise CnnlabError(
                f"cache: the disk holding {entry.parent} is full ({e.strerror}) while writing {entry.name}; "
                f"nothing was kept; free some space or {MOVE_HINT}"
            ) from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return entry


def human_bytes(n: float) -> str:
    """`n` bytes in decimal units, for messages: 1.5 GB, 730.0 MB."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


def check_space(directory: Path, nbytes: int, what: str) -> None:
    """Refuse, before writing a byte, a build of about `nbytes` that cannot fit on `directory`'s disk."""
    probe = directory
    while not probe.exists() and probe != probe.parent:  # the cache root may not exist yet
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return  # cannot tell; the build itself reports a full disk
    if nbytes > free:
        need, have = human_bytes(nbytes), human_bytes(free)
        raise CnnlabError(
            f"cache: {what} needs about {need} but the disk holding {directory} has {have} free; {MOVE_HINT}"
        )


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def open_writer(path: Path, shape: tuple[int, ...], dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """A writable memmap .npy of `shape` (a regular array for empty shapes, which cannot be mapped)."""
    if 0 in shape:
        return np.zeros(shape, dtype)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    _reserve(path)
    return arr


def _reserve(path: Path) -> None:
    # open_memmap makes a sparse file; a page written back to a full disk raises SIGBUS (no message, no cleanup).
    # Allocating the blocks now turns that into an OSError(ENOSPC) that build() reports.
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: the write-back risk remains
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # a filesystem that cannot
            raise
    finally:
        os.close(fd)


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
