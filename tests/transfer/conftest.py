from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    """A private dataset cache for these tests."""
    old = os.environ.get("CNNLAB_CACHE")
    os.environ["CNNLAB_CACHE"] = str(tmp_path_factory.mktemp("cnnlab-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-exact comparisons and a shared machine
    yield
    torch.set_num_threads(threads)
    if old is None:
        os.environ.pop("CNNLAB_CACHE", None)
    else:
        os.environ["CNNLAB_CACHE"] = old
