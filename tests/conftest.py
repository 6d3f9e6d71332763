from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per pytest worker: two workers with two OpenMP threads each on two cores spin at
    # barriers and run several times slower than one thread each.
    torch.set_num_threads(1)
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def is_heavy(name: str) -> bool:
    """Models too big for the default suite's budget (over 50M params or an input over 300 px): `slow`."""
    import cnnlab

    info = cnnlab.model_info(name)
    return info.params > 50_000_000 or info.input_size[-1] > 300


def registry_params(names, marks_heavy: bool = True):
    """pytest params over model names, heavy ones marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if marks_heavy and is_heavy(n) else n for n in names]
