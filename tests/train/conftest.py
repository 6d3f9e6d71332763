from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    """A private dataset cache for these tests (shared by the subprocesses they start)."""
    old = os.environ.get("CNNLAB_CACHE")
    os.environ["CNNLAB_CACHE"] = str(tmp_path_factory.mktemp("cnnlab-cache"))
    yield
    if old is None:
        os.environ.pop("CNNLAB_CACHE", None)
    else:
        os.environ["CNNLAB_CACHE"] = old


# A tiny, fast run: lenet5 on 256 shapes images, 8 steps per epoch, a checkpoint every 3 steps.
TINY = {
    "model": "lenet5",
    "data": "shapes:train=288,test=64,classes=4",
    "epochs": 3,
    "batch_size": 32,
    "lr": 0.05,
    "checkpoint_every": 3,
    "threads": 1,
    "eval_batch_size": 64,
    "progress": False,
    "plots": False,
}
