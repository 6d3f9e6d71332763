"""Readers of the on-disk formats. Each turns its files into uint8 NCHW arrays once; the cache keeps them.

A reader exposes `files(path) -> list[Path]` (what the content fingerprint covers) and
`read(path) -> Raw`. The image-folder reader decodes straight into the cache instead (see folder.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError

# Files up to this size are hashed in full; larger ones by size, mtime and their first and last MiB.
FULL_HASH_BYTES = 64 << 20
_EDGE_BYTES = 1 << 20


@dataclass
class Raw:
    """Decoded splits: name -> (x uint8 (N, C, H, W), y int64 (N,)), plus class names."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def fingerprint(paths: list[Path]) -> str:
    """A content hash of files: full sha256 for small files, size + mtime + head/tail sha256 for large ones."""
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0".encode())
        with open(p, "rb") as f:
            if st.st_size <= FULL_HASH_BYTES:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            else:
                # Reading 100 MB on every load would cost more than the cache saves; mtime guards the middle.
                h.update(f"{st.st_mtime_ns}".encode())
                h.update(f.read(_EDGE_BYTES))
                f.seek(st.st_size - _EDGE_BYTES)
                h.update(f.read(_EDGE_BYTES))
    return h.hexdigest()


def check_labels(name: str, y: np.ndarray, num_classes: int | None, n: int, defined_by: str = "") -> np.ndarray:
    """Validate a label array (integer, 1-D, length n, each in 0..num_classes-1) and return it as int64.

    Readers call this before anything allocates by label value (a class list, bincount), so a stray label of
    10**9 is an error here, not an 8 GB array later. `defined_by` says where the class count came from.
    """
    if y.ndim != 1:
        raise CnnlabError(f"{name}: labels must be 1-D, got shape {tuple(y.shape)}")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise CnnlabError(f"{name}: labels must be integers, got dtype {y.dtype}")
    if len(y) != n:
        raise CnnlabError(f"{name}: {len(y)} labels for {n} images (lengths differ)")
    if len(y):
        lo, hi = int(y.min()), int(y.max())
        if lo < 0:
            raise CnnlabError(f"{name}: label {lo} out of range (labels are class indices, 0 or more)")
        if num_classes is not None and hi >= num_classes:
            raise CnnlabError(f"{name}: label {hi} out of range 0..{num_classes - 1}{defined_by}")
    return y.astype(np.int64)


def classes_from_labels(name: str, y: np.ndarray, remedy: str) -> list[str]:
    """Class names '0'..'K-1' for training labels (already checked >= 0) whose largest value is K-1.

    Every class in between must occur: a gap almost always means a stray label (one 99 among 0..9 would make a
    100-class model), and refusing it bounds K by the number of images, never by a label's value.
    """
    if not len(y):
        raise CnnlabError(f"{name}: the training split is empty")
    present = np.unique(y)  # sorted; allocates by count, not by value
    top = int(present[-1])
    if top + 1 > len(present):
        first = int(np.flatnonzero(present != np.arange(len(present)))[0])  # the first index that is absent
        raise CnnlabError(
            f"{name}: labels run up to {top} but {top + 1 - len(present)} of 0..{top} never occur (first: {first}); "
            f"labels must be 0..K-1 with every class present, {remedy}"
        )
    return [str(i) for i in range(top + 1)]


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise CnnlabError(f"{what}: {path} does not exist")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise CnnlabError(f"{what}: {path} is {kind}; expected a file")
    return path
