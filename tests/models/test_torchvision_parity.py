"""torchvision as the oracle: its state_dict, saved to a file, loads into our model and gives the same outputs."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.registry import get_entry

tv_models = pytest.importorskip("torchvision.models")

PAIRS = [
    (n, get_entry(n).family.torchvision[n])
    for n in cnnlab.list_models()
    if n in get_entry(n).family.torchvision
]


@pytest.mark.parametrize(("name", "tv_name"), PAIRS, ids=[p[0] for p in PAIRS])
@pytest.mark.parametrize("fmt", ["pth"])
def test_torchvision_state_dict_loads_and_agrees(name, tv_name, fmt, tmp_path):
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if tv_name.startswith(("googlenet", "inception")) else {}
    ref = getattr(tv_models, tv_name)(weights=None, **kwargs).eval()
    # Random BN statistics, so that a swapped running_mean/var would show in the outputs.
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"tv.{fmt}"
    torch.save(ref.state_dict(), path)
    ours = cnnlab.create_model(name, weights=path).eval()
    size = cnnlab.model_info(name).input_size
    x = torch.randn(2, *size)
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * scale + 1e-6
