from __future__ import annotations

import warnings

import pytest
import torch


def tv_model(name: str, **kwargs) -> torch.nn.Module:
    """A torchvision model built on the meta device (no weights allocated), in eval mode."""
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet/Inception init FutureWarnings
        model = tv.models.get_model(name, weights=None, **kwargs)
    return model.eval()
