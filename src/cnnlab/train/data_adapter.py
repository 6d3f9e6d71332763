"""What the loop needs from `cnnlab.data`: train/val/test `cnnlab.data.Loader`s.

data.Loader already has the two properties the loop relies on: the batches are a pure function of
(seed, epoch, batch index), sharded within each global batch (with the augmentation drawn for the whole global
batch) so N processes see exactly the batches one process would, and `iter_from(b)` starts an epoch at any
batch without replaying the ones before it (exact resume). This module only picks the loaders' settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.data import Loader
from cnnlab.errors import CnnlabError


@dataclass
class DataBundle:
    train: Loader
    val: Loader | None
    test: Loader | None
    classes: list[str]
    mean: list[float]
    std: list[float]
    in_chans: int
    image_size: int
    spec: str
    test_split: str = "test"  # "val" when the source has no test split (its val split is then the held-out one)
    train_eval: Loader | None = None  # recipe.train_eval_images of the training split, un-augmented


def train_subset(train: Any, n: int) -> Any:
    """`n` training images for the un-augmented training error: a fixed draw (generator seed 0, whatever the
    run's seed, so runs that differ in seed or augmentation are measured on the same images), in index order."""
    if n >= len(train.y):
        return train
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(train.y), generator=g)[:n].sort().values
    return dataclasses.replace(train, x=train.x[idx], y=train.y[idx], split="train-eval")


def resolve_data_spec(spec: str) -> str:
    """The spec with its path made absolute, as a run records it (so eval and --resume work from any directory)."""
    from cnnlab.data.spec import parse_spec

    if not spec:
        return spec
    s = parse_spec(spec)
    return spec if s.path is None else f"{s.kind}:{s.path.resolve()}"


def data_path_missing(spec: str) -> bool:
    """True when the spec names a file or directory that does not exist (a moved dataset)."""
    from cnnlab.data.spec import parse_spec

    s = parse_spec(spec) if spec else None
    return s is not None and s.path is not None and not s.path.exists()


def _load(spec: str, split: str, size: int | None, val_fraction: float) -> Any:
    from cnnlab.data.dataset import load

    return load(spec, split=split, size=size, val_fraction=val_fraction)


def open_data(recipe: Any, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> DataBundle:
    """Train (shuffled, augmented, drop_last), val and test loaders for `recipe.data`.

    The validation split is the source's own when it has one, else a stratified `val_fraction` carved from the
    training split by cnnlab.data (seeded and cached, so a run and its resume see the same carve). Every split
    is normalized with the training split's statistics (cnnlab.data gives them to each split).
    """
    if not recipe.data:
        raise CnnlabError("no data given: pass --data SPEC (e.g. shapes, npz:path.npz) or set `data` in the recipe")
    if recipe.batch_size % world_size:
        raise CnnlabError(f"loader: batch {recipe.batch_size} is not divisible by {world_size} processes")
    size = recipe.image_size or None
    from cnnlab.data.dataset import available_splits

    splits = available_splits(recipe.data, size=size, val_fraction=recipe.val_fraction)
    train = _load(recipe.data, "train", size, recipe.val_fraction)
    val = _load(recipe.data, "val", size, recipe.val_fraction) if "val" in splits else None
    if "test" in splits:
        test, test_split = _load(recipe.data, "test", size, recipe.val_fraction), "test"
    elif val is not None:
        # The ImageNet layout (train/ and val/, no labelled test/): val selects the checkpoint and is the
        # held-out figure, as in the papers that report ImageNet val accuracy.
        test, test_split = val, "val"
    else:
        raise CnnlabError(f"{recipe.data} has no test or val split to report on; set val_fraction > 0 to carve one")
    common = {"rank": rank, "world_size": world_size, "device": device}
    train_loader = Loader(
        train, batch_size=recipe.batch_size, augment=recipe.augment, shuffle=True, seed=recipe.seed, drop_last=True,
        **common,
    )  # fmt: skip
    # Evaluation: no shuffling or augmentation; each rank takes eval_batch_size images of every global batch.
    ev = recipe.eval_batch_size * world_size
    val_loader = Loader(val, batch_size=ev, shuffle=False, **common) if val is not None and len(val.y) else None
    test_loader = Loader(test, batch_size=ev, shuffle=False, **common)
    n_eval = recipe.train_eval_images
    train_eval = Loader(train_subset(train, n_eval), batch_size=ev, shuffle=False, **common) if n_eval else None
    return DataBundle(
        train=train_loader,
        val=val_loader,
        test=test_loader,
        classes=list(train.classes),
        mean=[float(v) for v in train.mean],
        std=[float(v) for v in train.std],
        in_chans=int(train.x.shape[1]),
        image_size=int(train.x.shape[-1]),
        spec=str(recipe.data),
        test_split=test_split,
        train_eval=train_eval,
    )
