from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.train.conftest import _data_cache  # noqa: F401 (the private dataset cache, autouse)


def cifar_or_shapes() -> str:
    """The real CIFAR-10 copy of ../shared when it is there; else the embedded set at CIFAR's shape."""
    npz = SHARED / "data" / "cifar10.npz"
    return f"npz:{npz}" if npz.is_file() else "shapes:size=32,classes=10,train=1200,test=400"


def mnist_or_shapes() -> str:
    """The real MNIST copy of ../shared when it is there; else the embedded set (the precision lab's second task)."""
    npz = SHARED / "data" / "mnist.npz"
    return f"npz:{npz}" if npz.is_file() else "shapes:size=28,classes=10,train=1200,test=400"


@pytest.fixture(scope="session")
def quick_all(tmp_path_factory) -> Path:
    """`cnnlab reproduce all --quick` once, as CI runs it; each experiment's tests read its directory, OUT/NAME.
    MNIST, the precision experiments' second dataset, is named by CNNLAB_MNIST (what `reproduce all` reads)."""
    from cnnlab.cli import main

    out = tmp_path_factory.mktemp("reproduce-all")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_MNIST", mnist_or_shapes())
        assert main(["reproduce", "all", "--quick", "--data", cifar_or_shapes(), "--out", str(out)]) == 0
    return out
