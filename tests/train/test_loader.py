"""The training loader: a pure function of (seed, epoch, batch), sharded within each global batch, with the
batched augmentation checked against a per-image oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import UnknownNameError
from cnnlab.train.data_adapter import BatchLoader, _mix, augment_slice, parse_augment


def _data(n: int = 50):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(n)


def _loader(rank: int = 0, world: int = 1, **kw) -> BatchLoader:
    x, y = _data()
    args = {"batch_size": 10, "augment": "flip,crop:2", "shuffle": True, "seed": 3, "drop_last": True, **kw}
    return BatchLoader(x, y, [0.5] * 3, [0.25] * 3, rank=rank, world_size=world, **args)


def test_order_is_a_function_of_seed_and_epoch_and_start_skips_exactly():
    a, b = _loader(), _loader()
    a.set_epoch(2)
    b.set_epoch(2)
    full = list(a)
    tail = list(b.iter_from(3))
    assert len(full) == len(a) == 5 and len(tail) == 2
    for (x1, y1), (x2, y2) in zip(full[3:], tail):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    b.set_epoch(3)
    assert not torch.equal(next(iter(b))[1], full[0][1])  # another epoch, another order
    assert sorted(torch.cat([y for _, y in full]).tolist()) == sorted(set(torch.cat([y for _, y in full]).tolist()))


def test_two_ranks_together_make_the_single_process_batch():
    single = _loader()
    ranks = [_loader(rank=r, world=2) for r in range(2)]
    for loader in (single, *ranks):
        loader.set_epoch(1)
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks):
        assert torch.equal(torch.cat([y0, y1]), y)
        assert torch.equal(torch.cat([x0, x1]), x)  # same images, same augmentation


def _oracle(x: torch.Tensor, flip: bool, pad: int, seed: int) -> torch.Tensor:
    """One image at a time: the same draws, applied with plain slicing."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = x.shape
    mask = torch.rand(n, generator=g) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=g) if pad else torch.zeros(n, dtype=torch.long)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=g) if pad else torch.zeros(n, dtype=torch.long)
    out = []
    for i in range(n):
        img = x[i].flip(2) if mask[i] else x[i]
        img = F.pad(img, (pad, pad, pad, pad))
        out.append(img[:, oy[i] : oy[i] + h, ox[i] : ox[i] + w])
    return torch.stack(out)


@pytest.mark.parametrize("flip, pad", [(True, 0), (False, 3), (True, 4)])
def test_batched_augmentation_matches_the_per_image_oracle(flip, pad):
    x, _ = _data(17)
    fast = augment_slice(x, flip, pad, torch.Generator().manual_seed(_mix(1, 2)))
    assert torch.equal(fast, _oracle(x, flip, pad, _mix(1, 2)))


def test_augment_specs():
    assert parse_augment("flip,crop:4") == (True, 4)
    assert parse_augment("cifar") == (True, 4)
    assert parse_augment("none") == (False, 0)
    with pytest.raises(UnknownNameError, match="did you mean flip"):
        parse_augment("flp")
