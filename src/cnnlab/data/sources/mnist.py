"""`mnist:PATH`: IDX files, raw or gzip (MNIST, Fashion-MNIST and KMNIST share the format).

PATH is a directory holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte
and t10k-labels-idx1-ubyte (a '.' instead of the last '-' is accepted too).
IDX (LeCun): magic = 0, 0, dtype code, number of dims; then one big-endian int32 per dim; then the data.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnlab.data.sources import Raw, check_labels
from cnnlab.errors import CnnlabError

VERSION = 2  # part of the cache key; 2: test labels checked against the training split's classes

_PARTS = {
    ("train", "x"): ("train-images", 3),
    ("train", "y"): ("train-labels", 1),
    ("test", "x"): ("t10k-images", 3),
    ("test", "y"): ("t10k-labels", 1),
}


def _find(root: Path, stem: str, ndim: int) -> Path:
    for sep in ("-", "."):
        for ext in ("", ".gz"):
            p = root / f"{stem}{sep}idx{ndim}-ubyte{ext}"
            if p.is_file():
                return p
    raise CnnlabError(f"mnist: {root} has no {stem}-idx{ndim}-ubyte[.gz]")


def files(path: Path) -> list[Path]:
    if not path.is_dir():
        raise CnnlabError(f"mnist: {path} is not a directory of IDX files")
    return [_find(path, stem, nd) for stem, nd in _PARTS.values()]


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (raw or gzip) as a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a damaged .gz stream
        raise CnnlabError(f"mnist: cannot read {path.name}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CnnlabError(f"mnist: {path.name} is not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise CnnlabError(f"mnist: {path.name} holds dtype code 0x{data[2]:02x}; only unsigned bytes (0x08) are read")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CnnlabError(f"mnist: {path.name} is truncated (header)")
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", ndim, 4))
    n = int(np.prod(dims))
    if len(data) - header != n:
        raise CnnlabError(f"mnist: {path.name} holds {len(data) - header} bytes of data, dims {dims} need {n}")
    return np.frombuffer(data, np.uint8, n, header).reshape(dims)


def read(path: Path) -> Raw:
    found = dict(zip(_PARTS, files(path)))
    splits = {}
    num_classes = None  # set by the training labels; test labels must fall inside
    for split in ("train", "test"):
        x = read_idx(found[(split, "x")])
        y = read_idx(found[(split, "y")])
        if x.ndim != 3 or y.ndim != 1:
            raise CnnlabError(f"mnist: {split} images must be 3-D and labels 1-D, got {x.shape} and {y.shape}")
        defined_by = f" (the {num_classes} classes the training labels define)" if num_classes else ""
        y = check_labels(f"mnist: {found[(split, 'y')].name}", y, num_classes, len(x), defined_by)
        if split == "train":
            if not len(y):
                raise CnnlabError(f"mnist: {found[(split, 'x')].name} holds no images")
            num_classes = max(int(y.max()) + 1, 10)  # labels are bytes, so at most 256 classes
        splits[split] = (np.ascontiguousarray(x[:, None]), y)
    return Raw(splits, [str(i) for i in range(num_classes)])
