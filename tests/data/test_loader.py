from __future__ import annotations

import pytest
import torch

from cnnlab import data
from cnnlab.data.loader import _mix
from cnnlab.errors import CnnlabError

SPEC = "shapes:train=230,test=50,size=16"


@pytest.fixture
def ds() -> data.Dataset:
    return data.load(SPEC, val_fraction=0)


def test_batches(ds: data.Dataset) -> None:
    loader = data.Loader(ds, batch_size=64, augment="flip,crop:2", seed=0)
    assert len(loader) == 4
    batches = list(loader)
    assert [len(y) for _, y in batches] == [64, 64, 64, 38]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (64, 3, 16, 16) and y.dtype == torch.int64
    assert len(data.Loader(ds, batch_size=64, drop_last=True)) == 3


def test_no_augment_is_normalized_dataset_in_order(ds: data.Dataset) -> None:
    loader = data.Loader(ds, batch_size=100, augment="none", shuffle=False)
    x = torch.cat([xb for xb, _ in loader])
    y = torch.cat([yb for _, yb in loader])
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (ds.x.float() / 255 - mean) / std, atol=1e-5) and torch.equal(y, ds.y)
    # normalized with the training split's own statistics: mean 0, std 1 per channel
    assert x.mean((0, 2, 3)).abs().max() < 1e-4 and (x.std((0, 2, 3)) - 1).abs().max() < 1e-3


def _epoch_indices(loader: data.Loader) -> list[int]:
    return loader.indices().tolist()


@pytest.mark.parametrize(("world", "drop_last"), [(1, False), (2, False), (3, False), (4, True), (7, False)])
def test_shards_are_disjoint_and_cover_the_epoch(ds: data.Dataset, world: int, drop_last: bool) -> None:
    shards = []
    order = data.Loader(ds, batch_size=16, seed=3).order(5)
    for rank in range(world):
        loader = data.Loader(ds, batch_size=16, seed=3, rank=rank, world_size=world, drop_last=drop_last)
        loader.set_epoch(5)
        idx = _epoch_indices(loader)
        seen = torch.cat([y for _, y in loader])
        assert torch.equal(seen, ds.y[idx])  # the batches are exactly these samples, in this order
        shards.append(set(idx))
        assert len(idx) == len(set(idx))
        # rank r's part of global batch b is a contiguous slice of it, and b's slices go to the ranks in order
        lo = rank * 16 // world
        assert idx[: 16 // world] == order[lo : lo + 16 // world].tolist()
    for a in range(world):
        for b in range(a + 1, world):
            assert not shards[a] & shards[b]
    union = set().union(*shards)
    if drop_last:
        lens = {len(s) for s in shards}
        assert len(lens) == 1 and union == set(order[: len(ds) // 16 * 16].tolist())
    else:
        assert union == set(range(len(ds)))


AUG = "flip,crop:2,rcrop:14,jitter:0.3,pca:0.1,cutout:4"


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_together_make_the_single_process_batches(ds: data.Dataset, world: int) -> None:
    """Same global batch: the ranks' batches, concatenated in rank order, are the one-process batch, pixel
    for pixel (the augmentation is drawn per global batch, not per rank)."""
    single = data.Loader(ds, batch_size=30, augment=AUG, seed=4, drop_last=True)
    ranks = [data.Loader(ds, batch_size=30, augment=AUG, seed=4, rank=r, world_size=world, drop_last=True)
             for r in range(world)]  # fmt: skip
    for loader in (single, *ranks):
        loader.set_epoch(2)
    n = 0
    for (x, y), *parts in zip(single, *ranks):
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        n += 1
    assert n == len(single) == 7


def test_iter_from_is_the_tail_of_a_full_pass(ds: data.Dataset) -> None:
    a = data.Loader(ds, batch_size=32, augment=AUG, seed=1, rank=1, world_size=2)
    b = data.Loader(ds, batch_size=32, augment=AUG, seed=1, rank=1, world_size=2)
    a.set_epoch(3)
    b.set_epoch(3)
    full = list(a)
    tail = list(b.iter_from(5))
    assert len(full) == len(a) == 8 and len(tail) == 3
    for (x1, y1), (x2, y2) in zip(full[5:], tail):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert b.epoch == 4  # a pass that started mid-epoch still ends the epoch
    assert list(b.iter_from(len(b))) == []
    with pytest.raises(CnnlabError, match="start batch"):
        next(b.iter_from(9))


def test_loader_batch_matches_a_per_image_oracle(ds: data.Dataset) -> None:
    """A rank's batch against a slow path: the same draws (generator (seed, epoch, batch), global batch of 40),
    applied one image at a time with plain slicing, then (x / 255 - mean) / std."""
    loader = data.Loader(ds, batch_size=40, augment="flip,crop:3", seed=7, rank=1, world_size=2)
    loader.set_epoch(1)
    b = 2
    x, y = list(loader.iter_from(b))[0]
    glob = loader.order(1)[b * 40 : (b + 1) * 40]
    g = torch.Generator().manual_seed(_mix(7, 1, b, 1))
    flip = torch.rand(40, generator=g) < 0.5
    dy, dx = torch.randint(0, 7, (40,), generator=g), torch.randint(0, 7, (40,), generator=g)
    mean, std = torch.tensor(ds.mean).view(3, 1, 1), torch.tensor(ds.std).view(3, 1, 1)
    want = []
    for i in range(20, 40):  # rank 1 of 2: the second half
        img = ds.x[glob[i]]
        img = img.flip(-1) if flip[i] else img
        img = torch.nn.functional.pad(img, (3, 3, 3, 3))[:, dy[i] : dy[i] + 16, dx[i] : dx[i] + 16]
        want.append((img.float() / 255 - mean) / std)
    assert torch.equal(y, ds.y[glob[20:]])
    torch.testing.assert_close(x, torch.stack(want), rtol=0, atol=1e-5)


def test_deterministic_given_seed_and_epoch(ds: data.Dataset) -> None:
    def run(seed: int, epoch: int) -> torch.Tensor:
        loader = data.Loader(ds, batch_size=50, augment="flip,crop:2,cutout:4", seed=seed)
        loader.set_epoch(epoch)
        return torch.cat([x for x, _ in loader])

    a = run(0, 1)
    assert torch.equal(a, run(0, 1))
    assert not torch.equal(a, run(0, 2)) and not torch.equal(a, run(1, 1))
    loader = data.Loader(ds, batch_size=50, seed=0)
    first = _epoch_indices(loader)
    list(loader)  # a full pass advances the epoch
    assert loader.epoch == 1 and _epoch_indices(loader) != first
    loader.set_epoch(0)
    assert _epoch_indices(loader) == first


def test_loader_on_shared_cifar(shared_data, shared_cache) -> None:  # noqa: ANN001
    ds = data.load(f"npz:{shared_data / 'cifar10.npz'}", split="test", cache_dir=shared_cache)
    loader = data.Loader(ds, batch_size=512, augment="cifar", seed=0)
    x, y = next(iter(loader))
    assert x.shape == (512, 3, 32, 32) and len(loader) == 20
    assert abs(float(x.mean())) < 0.3  # normalized by the training statistics


def test_bad_arguments(ds: data.Dataset) -> None:
    with pytest.raises(CnnlabError, match="rank"):
        data.Loader(ds, rank=2, world_size=2)
    with pytest.raises(CnnlabError, match="batch_size"):
        data.Loader(ds, batch_size=0)
