"""Loader: shuffled, sharded, augmented batches straight from the uint8 tensor.

Each batch gathers uint8 rows by index, moves them to the device (4x less traffic than float), runs the
augmentation on the device with per-sample parameters, and converts + normalizes in one scale-and-shift.
No worker processes: the whole batch is a handful of tensor ops (airbench's approach).

Order: the permutation of epoch e comes from a generator seeded by (seed, e), the same on every rank; rank r
takes positions r, r + world_size, ..., so shards are disjoint and together cover the epoch. Augmentation
parameters come from a generator seeded by (seed, e, r). Everything is reproducible given (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cnnlab.data.augment import Augment
from cnnlab.data.dataset import Dataset
from cnnlab.errors import CnnlabError


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps), so (seed, epoch, rank) streams do not collide."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return h >> 1


class Loader:
    """Iterate (x float32 (B, C, H, W) normalized, y int64 (B,)) over one epoch of `ds`.

    Each pass uses the current epoch and then advances it; set_epoch(e) pins the next pass to epoch e
    (as with DistributedSampler). With drop_last=False the shards of a ragged epoch differ by at most one
    sample; with drop_last=True every rank gets the same number of full batches.
    """

    def __init__(
        self,
        ds: Dataset,
        batch_size: int = 512,
        augment: str | None = "none",
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        normalize: bool = True,
    ):
        if batch_size < 1:
            raise CnnlabError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise CnnlabError(f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}")
        self.ds = ds
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.normalize = normalize
        self.augment = Augment(augment, ds.mean, ds.std, ds.eigval, ds.eigvec)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _shard_len(self) -> int:
        n = len(self.ds)
        if self.drop_last:
            return n // self.world_size
        return n // self.world_size + (1 if self.rank < n % self.world_size else 0)

    def __len__(self) -> int:
        m = self._shard_len()
        return m // self.batch_size if self.drop_last else -(-m // self.batch_size)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's sample indices for `epoch` (default: the current one), in batch order."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.ds)
        if self.shuffle:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        shard = order[self.rank :: self.world_size][: self._shard_len()]
        if self.drop_last:
            shard = shard[: len(self) * self.batch_size]
        return shard

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        shard = self.indices(epoch)
        g = torch.Generator().manual_seed(_mix(self.seed, epoch, self.rank, 1))
        pin = self.device.type == "cuda"
        for s in range(0, len(shard), self.batch_size):
            idx = shard[s : s + self.batch_size]
            # index_select on rows copies whole images (memcpy); x[idx] would gather element by element.
            xb = self.ds.x.reshape(len(self.ds), -1).index_select(0, idx).view(-1, *self.ds.x.shape[1:])
            yb = self.ds.y.index_select(0, idx)
            if self.device.type != "cpu":
                if pin:
                    xb, yb = xb.pin_memory(), yb.pin_memory()
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            yield self.augment(xb, g, normalize=self.normalize), yb
        self.epoch = epoch + 1
