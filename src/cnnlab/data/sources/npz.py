"""`npz:PATH`: uint8 x_train/y_train/x_test/y_test (NHWC, or NHW for gray), like ../shared/data.

`x_val`/`y_val`, when present, are the validation split. Nothing is unpickled (allow_pickle=False).
The class list, against which every split's labels are checked: an array `class_names` or `classes` in the
file, else `class_names` in a JSON file beside it (PATH with suffix .json); without either, the training labels
define it: '0'..'K-1' for the largest training label K-1, every class in between occurring. A val or test label
outside the list is an error, never a silently larger model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnnlab.data.sources import Raw, check_labels, classes_from_labels, require_file
from cnnlab.errors import CnnlabError

VERSION = 2  # part of the cache key; 2: labels checked against the training split's classes
EXPECTED = "x_train, y_train and optionally x_val, y_val, x_test, y_test, classes"
_NAME_KEYS = ("class_names", "classes")
_SHOW_KEYS = 12  # keys named when the expected ones are missing


def files(path: Path) -> list[Path]:
    require_file(path, "npz")
    side = path.with_suffix(".json")
    return [path, side] if side.is_file() else [path]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _open(path: Path) -> np.lib.npyio.NpzFile:
    require_file(path, "npz")
    if path.stat().st_size == 0:
        raise CnnlabError(f"npz: {path} is empty (0 bytes)")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # a damaged file raises EOFError, BadZipFile, ValueError, OSError, ...: one line each
        raise CnnlabError(f"npz: cannot read {path}: {_first_line(e)}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CnnlabError(f"npz: {path} is a single .npy array, not an .npz archive (expected {EXPECTED})")
    return z


def _array(z: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    try:
        return z[key]
    except Exception as e:  # a damaged member: BadZipFile (CRC), zlib.error, EOFError, ValueError (header, pickle)
        raise CnnlabError(f"npz: {path}: cannot read array '{key}' (damaged file?): {_first_line(e)}") from None


def _class_names(path: Path, z: np.lib.npyio.NpzFile) -> tuple[list[str], str] | None:
    """(names, where they came from), or None when the training labels are to define the classes."""
    for key in _NAME_KEYS:
        if key in z.files:
            arr = _array(z, path, key)
            if arr.ndim != 1 or not len(arr):
                raise CnnlabError(f"npz: {path}: array '{key}' must be a 1-D list of names, got shape {arr.shape}")
            return [str(c) for c in arr.tolist()], f"array '{key}'"
    side = path.with_suffix(".json")
    if side.is_file():
        try:
            names = json.loads(side.read_text()).get("class_names")
        except (OSError, ValueError, AttributeError) as e:
            raise CnnlabError(f"npz: cannot read class names from {side}: {_first_line(e)}") from None
        if names is not None:
            if not isinstance(names, list) or not names:
                raise CnnlabError(f"npz: 'class_names' in {side} must be a non-empty list of names")
            return [str(c) for c in names], side.name
    return None


def _images(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    if x.dtype != np.uint8:
        raise CnnlabError(f"npz: {path}: array '{name}' must be uint8, got {x.dtype}")
    if x.ndim == 3:  # (N, H, W): gray
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        hint = "; it looks channel-first (N,C,H,W)" if x.ndim == 4 and x.shape[1] in (1, 3) else ""
        raise CnnlabError(
            f"npz: {path}: array '{name}' must be (N,H,W,C) with C in 1 or 3, got shape {tuple(x.shape)}{hint}"
        )
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _labels(z: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    y = _array(z, path, key)
    return y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y  # Keras' datasets store labels as (N, 1)


def _check_keys(path: Path, keys: set[str]) -> None:
    missing = [k for k in ("x_train", "y_train") if k not in keys]
    if missing:
        shown = sorted(keys)[:_SHOW_KEYS]
        found = ", ".join(shown) + (f" and {len(keys) - len(shown)} more" if len(keys) > len(shown) else "")
        raise CnnlabError(
            f"npz: {path} has no {' and no '.join(f'array {k!r}' for k in missing)}: expected {EXPECTED}; "
            f"found {found or 'no arrays'}"
        )
    for split in ("val", "test"):
        if (f"x_{split}" in keys) != (f"y_{split}" in keys):
            raise CnnlabError(f"npz: {path}: 'x_{split}' and 'y_{split}' must come together")


def _classes(path: Path, z: np.lib.npyio.NpzFile, y_train: np.ndarray, n_train: int) -> tuple[list[str], str]:
    """The class list and, for messages, where it came from."""
    named = _class_names(path, z)
    if named is not None:
        return named[0], f" ({len(named[0])} classes named in {named[1]})"
    name = f"npz: {path}: array 'y_train'"
    y = check_labels(name, y_train, None, n_train)  # integer, 1-D, >= 0: before anything is sized by a label
    classes = classes_from_labels(name, y, "or name the classes in an array 'classes' in the file")
    return classes, " (the classes y_train defines; name more in an array 'classes')"


def read(path: Path) -> Raw:
    with _open(path) as z:
        keys = set(z.files)
        _check_keys(path, keys)
        x_train, y_train = _images(path, "x_train", _array(z, path, "x_train")), _labels(z, path, "y_train")
        if not len(x_train):
            raise CnnlabError(f"npz: {path}: array 'x_train' holds no images")
        classes, where = _classes(path, z, y_train, len(x_train))
        raw = {}
        for split in ("train", "val", "test"):
            xk, yk = f"x_{split}", f"y_{split}"
            if xk not in keys:
                continue
            if split == "train":
                x, y = x_train, y_train
            else:
                x, y = _images(path, xk, _array(z, path, xk)), _labels(z, path, yk)
            raw[split] = (x, check_labels(f"npz: {path}: array '{yk}'", y, len(classes), len(x), where))
    shapes = {tuple(x.shape[1:]) for x, _ in raw.values()}
    if len(shapes) > 1:
        raise CnnlabError(f"npz: {path}: splits have different image shapes {sorted(shapes)}")
    return Raw(raw, classes)
