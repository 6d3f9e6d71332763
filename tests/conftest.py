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
# ../shared holds the real datasets and REFERENCES.md; a user's clone has none. CNNLAB_SHARED=/nonexistent runs
# the suite as such a clone would, without moving the directory.
SHARED = Path(os.environ.get("CNNLAB_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED


def torchvision_table() -> dict[str, tuple[int | None, float | None, int, float | None]]:
    """name -> (params, GMACs, eval crop, top-1) of every model whose figures torchvision publishes.

    params, GMACs and top-1 are the zoo's `published` entries (torchvision's weights metadata); the eval crop,
    and GoogLeNet's count without its auxiliary heads, come from cnnlab/references.toml.
    """
    import cnnlab
    from cnnlab import references
    from cnnlab.models.base import Published
    from cnnlab.registry import get_entry

    registered = set(cnnlab.list_models())
    without_aux = references.published("params_without_aux")
    table = {}
    for name, crop in references.published("eval_crop").items():
        # An unregistered name keeps its row (with no figures) so that the tests report it.
        pub = get_entry(name).family.published.get(name, Published()) if name in registered else Published()
        table[name] = (without_aux.get(name, pub.params), pub.gmacs, crop, pub.top1)
    return table


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
