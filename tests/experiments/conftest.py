from __future__ import annotations

import os

import pytest

from tests.conftest import SHARED


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


def cifar_or_shapes() -> str:
    """The real CIFAR-10 copy of ../shared when it is there; else the embedded set at CIFAR's shape."""
    npz = SHARED / "data" / "cifar10.npz"
    return f"npz:{npz}" if npz.is_file() else "shapes:size=32,classes=10,train=1200,test=400"
