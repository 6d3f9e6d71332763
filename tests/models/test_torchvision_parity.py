"""torchvision as the oracle: its state_dict, saved to a file, loads into our model and gives the same outputs."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.registry import get_entry
from tests.conftest import is_heavy

tv_models = pytest.importorskip("torchvision.models")

PAIRS = [
    pytest.param(n, get_entry(n).family.torchvision[n], id=n, marks=[pytest.mark.slow] if is_heavy(n) else [])
    for n in cnnlab.list_models()
    if n in get_entry(n).family.torchvision
]


@pytest.mark.parametrize(("name", "tv_name"), PAIRS)
def test_torchvision_state_dict_loads_and_agrees(name, tv_name, tmp_path):
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if tv_name.startswith(("googlenet", "inception")) else {}
    ref = getattr(tv_models, tv_name)(weights=None, **kwargs).eval()
    # Random BN statistics, so that a swapped running_mean/var would show in the outputs.
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "tv.pth"
    torch.save(ref.state_dict(), path)
    ours = cnnlab.create_model(name, weights=path).eval()
    # A small input keeps the test fast; parity cannot depend on the size (every pool before the head is adaptive).
    info = cnnlab.model_info(name)
    side = min(info.input_size[-1], max(info.min_input_size, 64))
    x = torch.randn(2, info.input_size[0], side, side)
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * scale + 1e-6
