"""Loader: shuffled, sharded, augmented batches straight from the uint8 tensor.

Each batch gathers uint8 rows by index, moves them to the device (4x less traffic than float), runs the
augmentation on the device with per-sample parameters, and converts + normalizes in one scale-and-shift.
No worker processes: the whole batch is a handful of tensor ops (airbench's approach).

Order: the permutation of epoch e comes from a generator seeded by (seed, e), the same on every rank.
`batch_size` is the GLOBAL batch: global batch b holds positions [b*B, (b+1)*B) of the permutation, and rank r
of W takes the r-th contiguous slice of it (sizes differ by at most one), so shards are disjoint and together
cover the epoch. The augmentation parameters of global batch b are drawn for the whole global batch from a
generator seeded by (seed, e, b), and each rank applies the rows of its slice. So W processes see exactly the
pixels one process would, and any batch can be produced without replaying the ones before it (exact
mid-epoch resume: `iter_from(b)`). Everything is reproducible given (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cnnlab.data.augment import Augment, slice_params
from cnnlab.data.dataset import Dataset
from cnnlab.errors import CnnlabError


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps), so (seed, epoch, batch) streams do not collide."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return h >> 1


class Loader:
    """Iterate (x float32 (b, C, H, W) normalized, y int64 (b,)) over this rank's part of one epoch of `ds`.

    `batch_size` is the global batch, shared by the `world_size` ranks (b = batch_size / world_size when it
    divides). Each pass uses the current epoch and then advances it; set_epoch(e) pins the next pass to epoch e
    (as with DistributedSampler); iter_from(start) begins that pass at global batch `start`. len() counts global
    batches, the same on every rank. With drop_last=True only full global batches are used; with drop_last=False
    the last one is short, and a rank whose slice of it is empty (fewer images than ranks) skips it.
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

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int | None = None) -> torch.Tensor:
        """Every sample index of `epoch` (default: the current one) in global batch order, the same on all ranks."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.ds)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(_mix(self.seed, epoch)))

    def _slice(self, n_global: int) -> tuple[int, int]:
        """This rank's rows [lo, hi) of a global batch of n_global: contiguous, balanced, in rank order."""
        return self.rank * n_global // self.world_size, (self.rank + 1) * n_global // self.world_size

    def _batches(self, order: torch.Tensor, start: int) -> Iterator[tuple[int, torch.Tensor, int, int]]:
        if not 0 <= start <= len(self):
            raise CnnlabError(f"start batch must be in 0..{len(self)}, got {start}")
        for b in range(start, len(self)):
            glob = order[b * self.batch_size : (b + 1) * self.batch_size]
            lo, hi = self._slice(len(glob))
            if hi > lo:
                yield b, glob, lo, hi

    def indices(self, epoch: int | None = None, start: int = 0) -> torch.Tensor:
        """This rank's sample indices for `epoch` (default: the current one) from batch `start`, in batch order."""
        parts = [glob[lo:hi] for _, glob, lo, hi in self._batches(self.order(epoch), start)]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def iter_from(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the current epoch beginning at global batch `start`; identical to the tail of a full pass."""
        epoch = self.epoch
        pin = self.device.type == "cuda"
        flat = self.ds.x.reshape(len(self.ds), -1)
        _, c, h, w = self.ds.x.shape
        for b, glob, lo, hi in self._batches(self.order(epoch), start):
            idx = glob[lo:hi]
            # index_select on rows copies whole images (memcpy); x[idx] would gather element by element.
            xb = flat.index_select(0, idx).view(-1, c, h, w)
            yb = self.ds.y.index_select(0, idx)
            if self.device.type != "cpu":
                if pin:
                    xb, yb = xb.pin_memory(), yb.pin_memory()
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            # Parameters for the whole global batch (cheap: a few numbers per image), then this rank's rows.
            g = torch.Generator().manual_seed(_mix(self.seed, epoch, b, 1))
            params = self.augment.sample(len(glob), c, h, w, g)
            if (lo, hi) != (0, len(glob)):
                params = slice_params(params, lo, hi)
            yield self.augment.apply(xb, params, normalize=self.normalize), yb
        self.epoch = epoch + 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)
