"""The data an experiment trains on: found, checked, and cut into one fixed subset file per experiment.

CIFAR-10 is found, in this order: `--data SPEC`; the environment variable CNNLAB_CIFAR10 (a spec, e.g.
`cifar10:/data/cifar-10-batches-py` or `npz:/data/cifar10.npz`), set once in one's shell profile; the official
python-version archive already downloaded into ~/.cache/cnnlab/cifar-10-batches-py (`cnnlab reproduce NAME
--download` fetches and verifies it where there is internet). Without any of these, one line says how to pass it.

The subset (stratified, seed 0) is written once as `data.npz` in the experiment directory, so every trial, its
resume and `cnnlab eval` on a trial read the same images, and the experiment's results do not depend on where
the source lived. An experiment whose arms train on different data (transfer: a source task, then target tasks
of N images per class) cuts its per-arm files from that subset with its `datasets` hook, written beside it.
The precision experiments' hook also reads a second dataset, MNIST (their config's `mnist`, a spec; the name
`mnist` is looked up in CNNLAB_MNIST), and cuts its subset the same way.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError

ENV = "CNNLAB_CIFAR10"
MNIST_ENV = "CNNLAB_MNIST"  # a spec for the name `mnist` (cnnlab.experiments.precision_lab's second dataset)
CACHE = Path.home() / ".cache" / "cnnlab"
# The official archive (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html) and its published MD5.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def resolve(spec: str) -> str:
    """A dataset spec for `spec`; the name `cifar10` (no path) is looked up as the module docstring says, the name
    `mnist` (the precision experiments' second dataset, their config's `mnist`) in CNNLAB_MNIST."""
    if spec == "mnist":
        if os.environ.get(MNIST_ENV):
            return os.environ[MNIST_ENV]
        raise CnnlabError(
            "MNIST not found: pass --set mnist=SPEC (e.g. --set mnist=npz:../shared/data/mnist.npz or "
            f"mnist:/path/to/idx-files), or set {MNIST_ENV}=SPEC once (what `reproduce all` reads)"
        )
    if spec != "cifar10":
        return spec
    if os.environ.get(ENV):
        return os.environ[ENV]
    cached = CACHE / "cifar-10-batches-py"
    if (cached / "data_batch_1").is_file():
        return f"cifar10:{cached}"
    raise CnnlabError(
        "CIFAR-10 not found: pass --data SPEC (e.g. --data cifar10:/path/to/cifar-10-batches-py or "
        f"--data npz:../shared/data/cifar10.npz), set {ENV}=SPEC once, or fetch it with --download"
    )


def download_cifar10(log: Any = print) -> str:
    """Fetch the official archive into ~/.cache/cnnlab, check its MD5, unpack it; returns the spec."""
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / "cifar-10-python.tar.gz"
    if not archive.is_file():
        log(f"downloading {CIFAR10_URL}")
        part = archive.with_suffix(".part")
        try:
            urllib.request.urlretrieve(CIFAR10_URL, part)  # noqa: S310 (a fixed https URL)
        except OSError as e:
            raise CnnlabError(f"cannot download CIFAR-10 ({e}); pass --data SPEC instead") from None
        part.replace(archive)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()  # noqa: S324 (the published checksum is MD5)
    if md5 != CIFAR10_MD5:
        archive.unlink()
        raise CnnlabError(f"{archive}: MD5 {md5} is not the published {CIFAR10_MD5}; deleted, try again")
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data")  # the "data" filter refuses links and paths outside CACHE
    return f"cifar10:{CACHE / 'cifar-10-batches-py'}"


def _subset(y: torch.Tensor, n: int, classes: int, seed: int) -> torch.Tensor:
    """Indices of a stratified subset of about n images (n // classes per class; 0: all), in a fixed order."""
    if n == 0 or n >= len(y):
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed)
    per = max(1, n // classes)
    idx = [torch.nonzero(y == c).flatten() for c in range(classes)]
    idx = [i[torch.randperm(len(i), generator=g)][:per] for i in idx]
    return torch.cat(idx).sort().values


def prepare(cfg: Any, exp: Any, out: Path, log: Any = print) -> dict[str, Any]:
    """Write `out/data.npz` (once) and return what the report says about it (source, sizes, classes, sha256).

    An experiment with a `datasets` hook also gets its per-arm files (`arm_file`), each with its sizes, classes
    and sha256 under the key "datasets"; data.json is written after all of them."""
    from cnnlab.data.dataset import available_splits, load
    from cnnlab.fileio import atomic_path, write_json

    path, info_path = out / "data.npz", out / "data.json"
    if path.is_file() and info_path.is_file():
        import json

        return json.loads(info_path.read_text())
    spec = resolve(cfg.data)
    splits = available_splits(spec, size=None, val_fraction=0.0)
    train = load(spec, split="train", val_fraction=0.0)
    test = load(spec, split="test" if "test" in splits else "val", val_fraction=0.0)
    c, k = int(train.x.shape[1]), len(train.classes)
    if exp.needs_channels is not None and c != exp.needs_channels:
        raise CnnlabError(
            f"{exp.name} needs {exp.needs_channels}-channel images (its claim is about CIFAR-10), {spec} has {c}"
        )
    if k < exp.min_classes:
        raise CnnlabError(f"{exp.name} needs at least {exp.min_classes} classes, {spec} has {k}")
    tr = _subset(train.y, cfg.train_images, k, seed=0)
    te = _subset(test.y, cfg.test_images, k, seed=1)
    if len(tr) * (1 - cfg.val_fraction) < cfg.batch_size:
        raise CnnlabError(f"{spec}: {len(tr)} training images leave less than one batch of {cfg.batch_size}")
    arrays = {
        "x_train": train.x[tr].permute(0, 2, 3, 1).numpy(),
        "y_train": train.y[tr].numpy().astype(np.int64),
        "x_test": test.x[te].permute(0, 2, 3, 1).numpy(),
        "y_test": test.y[te].numpy().astype(np.int64),
        "classes": np.array(list(train.classes)),
    }
    # The per-arm files are cut (and checked) before anything is written, so bad sizes leave nothing behind.
    extra = exp.datasets(cfg, arrays) if exp.datasets is not None else None
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    info = {
        "source": spec,
        "train_images": len(tr),
        "test_images": len(te),
        "image_size": list(train.x.shape[1:]),
        "classes": list(train.classes),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    log(f"data: {len(tr)} training and {len(te)} test images of {spec} -> {path}")
    if extra is not None:
        info["datasets"] = {name: _write_arm_data(out, name, a, log) for name, a in extra.items()}
    write_json(info_path, info)  # last: its presence means every file above is complete
    return info


def arm_file(out: Path, name: str) -> Path:
    """The training data of an arm whose `data` is `name` ("" is the experiment's own data.npz)."""
    return out / (f"data-{name}.npz" if name else "data.npz")


def _write_arm_data(out: Path, name: str, arrays: dict[str, Any], log: Any) -> dict[str, Any]:
    from cnnlab.fileio import atomic_path

    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"dataset name {name!r} must be non-empty letters, digits, '-' or '_' (a file name)")
    path = arm_file(out, name)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    splits = {s: int(len(arrays[f"y_{s}"])) for s in ("train", "val", "test") if f"y_{s}" in arrays}
    log(f"data: {name}: " + ", ".join(f"{n} {s}" for s, n in splits.items()) + f" images -> {path}")
    x = arrays["x_train"]  # NHWC, or NHW for gray
    return {
        **{f"{s}_images": n for s, n in splits.items()},
        "image_size": [int(x.shape[3]) if x.ndim == 4 else 1, int(x.shape[1]), int(x.shape[2])],  # C, H, W
        "classes": [str(c) for c in arrays["classes"]],
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
