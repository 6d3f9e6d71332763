"""What the loop needs from `cnnlab.data`: train/val/test loaders whose batch order is a pure function of
(seed, epoch, batch index), sharded within each global batch so N processes see exactly the batch one process
would, and able to start at any batch of an epoch without replaying the ones before.

`BatchLoader` is that loader over uint8 tensors: the whole split stays uint8 in memory (4x smaller than float),
and each batch is indexed, moved, augmented and normalized as one tensor (airbench's batch-level data path),
with no worker processes and no per-image Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError, UnknownNameError

AUGMENTS = ("none", "flip", "crop")
PRESETS = {"none": "none", "cifar": "flip,crop:4", "standard": "flip,crop:4", "flip": "flip"}


def parse_augment(text: str) -> tuple[bool, int]:
    """'flip,crop:4' -> (flip, crop padding); presets: none, cifar/standard (= flip,crop:4), flip."""
    text = PRESETS.get(text.strip(), text.strip())
    flip, pad = False, 0
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, arg = item.partition(":")
        if name not in AUGMENTS:
            raise UnknownNameError("augmentation", name, [*AUGMENTS, *PRESETS])
        if name == "flip":
            flip = True
        elif name == "crop":
            try:
                pad = int(arg or 4)
            except ValueError:
                raise CnnlabError(f"augment crop:{arg}: the padding must be an integer") from None
            if pad < 0:
                raise CnnlabError(f"augment crop:{arg}: the padding must be >= 0")
    return flip, pad


def _mix(*ints: int) -> int:
    # A fixed, platform-independent mix of small integers into one 63-bit generator seed.
    h = 0x9E3779B97F4A7C15
    for v in ints:
        h = (h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class BatchLoader:
    """Batches of (float32 normalized images, int64 labels) from uint8 tensors.

    Epoch e's order is randperm(seed, e); global batch b holds positions [b*B, (b+1)*B) of it, and rank r of W
    takes the r-th contiguous slice of B/W. Augmentation draws for batch b come from a generator seeded by
    (seed, e, b) for the whole global batch, then sliced, so they match the single-process run too.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int,
        augment: str = "none",
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
    ):
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise CnnlabError(f"loader: expected uint8 (N, C, H, W) images, got {x.dtype} {tuple(x.shape)}")
        if batch_size % world_size:
            raise CnnlabError(f"loader: batch {batch_size} is not divisible by {world_size} processes")
        self.x, self.y = x, y
        self.batch_size, self.local = batch_size, batch_size // world_size
        self.flip, self.pad = parse_augment(augment)
        self.shuffle, self.seed, self.rank, self.world = shuffle, seed, rank, world_size
        self.drop_last = drop_last
        self.device = torch.device(device)
        c = x.shape[1]
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, c, 1, 1) * 255
        self.inv_std = 1 / (torch.tensor(list(std), dtype=torch.float32, device=self.device).view(1, c, 1, 1) * 255)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self) -> torch.Tensor:
        n = len(self.y)
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        return torch.randperm(n, generator=g)

    def iter_from(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            share = math.ceil(len(idx) / self.world)
            lo = self.rank * share
            local = idx[lo : lo + share]
            if len(local) == 0:  # the short last eval batch may leave a rank nothing
                continue
            xb = self.x[local].to(self.device, non_blocking=True)
            yb = self.y[local].to(self.device, non_blocking=True)
            if self.flip or self.pad:
                g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, b, 1))
                xb = augment_slice(xb, self.flip, self.pad, g, len(idx), lo)
            yield (xb.float() - self.mean) * self.inv_std, yb

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)


def augment_slice(
    x: torch.Tensor, flip: bool, pad: int, g: torch.Generator, n_global: int | None = None, lo: int = 0
) -> torch.Tensor:
    """Random horizontal flip and pad-and-crop (He et al. 2015 Sec. 4.2: 4 px zero padding, then a crop of the
    original size) of a uint8 batch. The draws are made for the whole global batch of `n_global` images on the
    CPU generator `g`, and this rank applies its slice [lo, lo + len(x)): the same images get the same
    augmentation whatever the process count or device."""
    n_global = len(x) if n_global is None else n_global
    m, _, h, w = x.shape
    sl = slice(lo, lo + m)
    if flip:
        mask = (torch.rand(n_global, generator=g) < 0.5)[sl].to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    if pad:
        oy = torch.randint(0, 2 * pad + 1, (n_global,), generator=g)[sl].to(x.device)
        ox = torch.randint(0, 2 * pad + 1, (n_global,), generator=g)[sl].to(x.device)
        xp = F.pad(x, (pad, pad, pad, pad))
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (m, 1, h, 1)
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (m, 1, 1, w)
        nidx = torch.arange(m, device=x.device)[:, None, None, None]
        cidx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = xp[nidx, cidx, rows, cols]
    return x


@dataclass
class DataBundle:
    train: Any
    val: Any | None
    test: Any | None
    classes: list[str]
    mean: list[float]
    std: list[float]
    in_chans: int
    image_size: int
    spec: str


def _load(spec: str, split: str, size: int | None, val_fraction: float) -> Any:
    from cnnlab.data.dataset import load

    return load(spec, split=split, size=size, val_fraction=val_fraction)


def open_data(recipe: Any, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> DataBundle:
    """Train (shuffled, augmented, drop_last), val and test loaders for `recipe.data`.

    The validation split is the source's own when it has one, else a stratified `val_fraction` carved from the
    training split by cnnlab.data (seeded and cached, so a run and its resume see the same carve).
    """
    if not recipe.data:
        raise CnnlabError("no data given: pass --data SPEC (e.g. shapes, npz:path.npz) or set `data` in the recipe")
    size = recipe.image_size or None
    train = _load(recipe.data, "train", size, recipe.val_fraction)
    x, y = torch.as_tensor(train.x), torch.as_tensor(train.y)
    try:
        val = _load(recipe.data, "val", size, recipe.val_fraction)
    except CnnlabError:
        val = None  # no val split and val_fraction = 0
    test = _load(recipe.data, "test", size, recipe.val_fraction)
    mean, std = [float(v) for v in train.mean], [float(v) for v in train.std]
    common = {"mean": mean, "std": std, "rank": rank, "world_size": world_size, "device": device}
    train_loader = BatchLoader(
        x,
        y,
        batch_size=recipe.batch_size,
        augment=recipe.augment,
        shuffle=True,
        seed=recipe.seed,
        drop_last=True,
        **common,
    )
    ev = recipe.eval_batch_size * world_size
    val_loader = None
    if val is not None and len(val.y):
        val_loader = BatchLoader(torch.as_tensor(val.x), torch.as_tensor(val.y), batch_size=ev, **common)
    test_loader = BatchLoader(torch.as_tensor(test.x), torch.as_tensor(test.y), batch_size=ev, **common)
    return DataBundle(
        train=train_loader,
        val=val_loader,
        test=test_loader,
        classes=list(train.classes),
        mean=mean,
        std=std,
        in_chans=int(x.shape[1]),
        image_size=int(x.shape[-1]),
        spec=str(recipe.data),
    )
