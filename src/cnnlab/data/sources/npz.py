"""`npz:PATH`: uint8 x_train/y_train/x_test/y_test (NHWC, or NHW for gray), like ../shared/data.

Class names come from an array `class_names`/`classes` in the file, or from `class_names` in a JSON file
beside it (PATH with suffix .json), else they are the label numbers. `x_val`/`y_val`, when present, are the
validation split. Nothing is unpickled (allow_pickle=False).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from cnnlab.data.sources import Raw, check_labels, require_file
from cnnlab.errors import CnnlabError


def files(path: Path) -> list[Path]:
    require_file(path, "npz")
    side = path.with_suffix(".json")
    return [path, side] if side.is_file() else [path]


def _class_names(path: Path, z: np.lib.npyio.NpzFile) -> list[str] | None:
    for key in ("class_names", "classes"):
        if key in z.files:
            return [str(c) for c in z[key].tolist()]
    side = path.with_suffix(".json")
    if side.is_file():
        try:
            names = json.loads(side.read_text()).get("class_names")
        except (ValueError, AttributeError) as e:
            raise CnnlabError(f"npz: cannot read class names from {side}: {e}") from None
        if names is not None:
            return [str(c) for c in names]
    return None


def _images(name: str, x: np.ndarray) -> np.ndarray:
    if x.dtype != np.uint8:
        raise CnnlabError(f"npz: array '{name}' must be uint8, got {x.dtype}")
    if x.ndim == 3:  # (N, H, W): gray
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise CnnlabError(f"npz: array '{name}' must be (N,H,W,C) with C in 1 or 3, got shape {tuple(x.shape)}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def read(path: Path) -> Raw:
    try:
        z = np.load(require_file(path, "npz"), allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CnnlabError(f"npz: cannot read {path}: {str(e).splitlines()[0]}") from None
    with z:
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CnnlabError(f"npz: {path} is a single .npy array, not an .npz archive")
        for key in ("x_train", "y_train"):
            if key not in z.files:
                raise CnnlabError(f"npz: {path} has no array '{key}' (found: {', '.join(z.files)})")
        classes = _class_names(path, z)
        raw = {}
        for split in ("train", "val", "test"):
            xk, yk = f"x_{split}", f"y_{split}"
            if xk not in z.files and yk not in z.files:
                continue
            if xk not in z.files or yk not in z.files:
                raise CnnlabError(f"npz: '{xk}' and '{yk}' must come together")
            try:
                x, y = z[xk], z[yk]
            except ValueError as e:  # an object array would need pickle
                raise CnnlabError(f"npz: array '{xk}' or '{yk}' cannot be read: {e}") from None
            x = _images(xk, x)
            n_cls = len(classes) if classes is not None else None
            raw[split] = (x, check_labels(f"npz: array '{yk}'", y, n_cls, len(x)))
    shapes = {tuple(x.shape[1:]) for x, _ in raw.values()}
    if len(shapes) > 1:
        raise CnnlabError(f"npz: splits have different image shapes {sorted(shapes)}")
    if classes is None:
        top = max(int(y.max()) if len(y) else 0 for _, y in raw.values())
        classes = [str(i) for i in range(top + 1)]
    return Raw(raw, classes)
