"""`cifar10:PATH` and `cifar100:PATH`: Krizhevsky's "python version" pickles or "binary version" .bin files.

PATH is the extracted directory (cifar-10-batches-py, cifar-10-batches-bin, cifar-100-python or
cifar-100-binary) or its parent. The pickles are read by an unpickler that resolves no global except numpy's
array reconstruction (which the official files need), so a pickle that tries to run code is refused.
Binary records: CIFAR-10 = 1 label byte + 3072 pixel bytes; CIFAR-100 = coarse label byte + fine label byte
+ 3072 pixel bytes; pixels are 1024 R, 1024 G, 1024 B, row-major 32x32.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from cnnlab.data.sources import Raw, check_labels
from cnnlab.errors import CnnlabError

VERSION = 1  # part of the cache key

try:  # numpy >= 2 moved the module; old pickles still name numpy.core.multiarray
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

# Exactly the globals the official pickles reference (Python 2 cPickle of dicts holding numpy arrays).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

_LAYOUT = {
    "cifar10": {
        "py": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"),
        "bin": (
            "cifar-10-batches-bin",
            [f"data_batch_{i}.bin" for i in range(1, 6)],
            ["test_batch.bin"],
            "batches.meta.txt",
        ),
    },
    "cifar100": {
        "py": ("cifar-100-python", ["train"], ["test"], "meta"),
        "bin": ("cifar-100-binary", ["train.bin"], ["test.bin"], "fine_label_names.txt"),
    },
}


class SafeUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-reconstruction globals; anything else (os.system, eval, ...) is refused."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CnnlabError(
                f"cifar: refusing to unpickle '{module}.{name}' (only numpy arrays are allowed)"
            ) from None


def safe_load(path: Path) -> object:
    """Unpickle a CIFAR file without running code; keys of Python 2 pickles come back as str."""
    try:
        data = path.read_bytes()
        obj = SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except CnnlabError:
        raise
    except Exception as e:  # a damaged pickle can raise nearly anything; report it on one line
        raise CnnlabError(f"cifar: cannot read {path.name}: {type(e).__name__}: {e}") from None
    if isinstance(obj, dict):
        obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    return obj


def _locate(kind: str, path: Path) -> tuple[str, Path]:
    if not path.exists():
        raise CnnlabError(f"{kind}: {path} does not exist")
    for fmt, (dirname, train, _test, _meta) in _LAYOUT[kind].items():
        for root in (path, path / dirname):
            if (root / train[0]).is_file():
                return fmt, root
    names = " or ".join(v[0] for v in _LAYOUT[kind].values())
    raise CnnlabError(f"{kind}: {path} holds neither {names} files")


def files(kind: str, path: Path) -> list[Path]:
    fmt, root = _locate(kind, path)
    _, train, test, meta = _LAYOUT[kind][fmt]
    found = [root / n for n in train + test]
    missing = [p.name for p in found if not p.is_file()]
    if missing:
        raise CnnlabError(f"{kind}: {root} lacks {', '.join(missing)}")
    return found + ([root / meta] if (root / meta).is_file() else [])


def _read_py(kind: str, root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    label_key = "labels" if kind == "cifar10" else "fine_labels"
    xs, ys = [], []
    for n in names:
        d = safe_load(root / n)
        if not isinstance(d, dict) or "data" not in d or label_key not in d:
            raise CnnlabError(f"{kind}: {n} is not a CIFAR batch (needs 'data' and '{label_key}')")
        x = np.asarray(d["data"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
            raise CnnlabError(f"{kind}: {n}: 'data' must be uint8 (N, 3072), got {x.dtype} {x.shape}")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key]))
    return np.concatenate(xs), np.concatenate(ys)


def _read_bin(kind: str, root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    head = 1 if kind == "cifar10" else 2  # CIFAR-100 records carry the coarse label, then the fine one
    rec = head + 3072
    xs, ys = [], []
    for n in names:
        buf = np.fromfile(root / n, np.uint8)
        if len(buf) % rec:
            raise CnnlabError(f"{kind}: {n} is {len(buf)} bytes, not a whole number of {rec}-byte records")
        buf = buf.reshape(-1, rec)
        xs.append(buf[:, head:].reshape(-1, 3, 32, 32))
        ys.append(buf[:, head - 1])
    return np.concatenate(xs), np.concatenate(ys)


def _classes(kind: str, fmt: str, root: Path) -> list[str]:
    meta = root / _LAYOUT[kind][fmt][3]
    n = 10 if kind == "cifar10" else 100
    if meta.is_file():
        if fmt == "bin":
            names = [s.strip() for s in meta.read_text().splitlines() if s.strip()]
        else:
            d = safe_load(meta)
            key = "label_names" if kind == "cifar10" else "fine_label_names"
            names = d.get(key, []) if isinstance(d, dict) else []
            names = [s.decode() if isinstance(s, bytes) else str(s) for s in names]
        if len(names) == n:
            return names
    return [str(i) for i in range(n)]


def read(kind: str, path: Path) -> Raw:
    fmt, root = _locate(kind, path)
    _, train, test, _ = _LAYOUT[kind][fmt]
    reader = _read_py if fmt == "py" else _read_bin
    classes = _classes(kind, fmt, root)
    splits = {}
    for split, names in (("train", train), ("test", test)):
        x, y = reader(kind, root, names)
        splits[split] = (np.ascontiguousarray(x), check_labels(f"{kind}: {split} labels", y, len(classes), len(x)))
    return Raw(splits, classes)
