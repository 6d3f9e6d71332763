"""The loop's loaders are cnnlab.data.Loader: a pure function of (seed, epoch, batch), sharded within each
global batch, resumable at any batch (the loader itself is tested in tests/data/test_loader.py)."""

from __future__ import annotations

import pytest
import torch

from cnnlab import data
from cnnlab.errors import CnnlabError
from cnnlab.train.data_adapter import open_data
from cnnlab.train.recipe import load_recipe
from tests.train.conftest import TINY


def test_open_data_gives_data_loaders_that_shard_like_one_process():
    recipe = load_recipe(None, **TINY)
    single = open_data(recipe)
    ranks = [open_data(recipe, rank=r, world_size=2) for r in range(2)]
    assert isinstance(single.train, data.Loader) and single.train.drop_last and single.train.shuffle
    assert len(single.train) == len(ranks[0].train) == len(single.train.ds) // 32 > 4
    for bundle in (single, *ranks):
        bundle.train.set_epoch(1)
    for (x, y), (x0, y0), (x1, y1) in zip(single.train.iter_from(4), *(b.train.iter_from(4) for b in ranks)):
        assert x0.shape[0] == 16 and torch.equal(torch.cat([y0, y1]), y) and torch.equal(torch.cat([x0, x1]), x)
    # evaluation: unshuffled, unaugmented, every test image exactly once over the ranks
    ys = [torch.cat([yb for _, yb in b.test]) for b in ranks]
    assert torch.equal(torch.cat([yb for _, yb in single.test]).sort().values, torch.cat(ys).sort().values)


def test_batch_must_split_over_the_processes():
    with pytest.raises(CnnlabError, match="not divisible"):
        open_data(load_recipe(None, **TINY), rank=0, world_size=3)
