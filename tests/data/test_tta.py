from __future__ import annotations

import pytest
import torch

from cnnlab import data
from cnnlab.errors import CnnlabError, UnknownNameError


def test_view_shapes_and_content() -> None:
    x = torch.rand(5, 3, 12, 12)
    assert torch.equal(data.views(x)[0], x)
    f = data.views(x, "flip")
    assert f.shape == (2, 5, 3, 12, 12) and torch.equal(f[1].flip(-1), x)
    c = data.views(x, "center:8")
    assert c.shape == (1, 5, 3, 8, 8) and torch.equal(c[0], x[..., 2:10, 2:10])
    t = data.views(x, "tencrop:8")
    assert t.shape == (10, 5, 3, 8, 8)
    corners = [x[..., :8, :8], x[..., :8, 4:], x[..., 4:, :8], x[..., 4:, 4:], x[..., 2:10, 2:10]]
    for i, want in enumerate(corners):
        assert torch.equal(t[i], want) and torch.equal(t[i + 5], want.flip(-1))
    m = data.views(x, "multiscale:1.0/1.5")
    assert m.shape == (4, 5, 3, 12, 12) and torch.equal(m[0], x) and torch.equal(m[1], x.flip(-1))
    assert data.views(x, "center:0.5").shape[-1] == 6


def test_bad_modes() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(UnknownNameError, match="tencrop"):
        data.views(x, "tencorp:4")
    with pytest.raises(CnnlabError, match="1..8"):
        data.views(x, "center:9")
    with pytest.raises(CnnlabError, match=">= 1"):
        data.views(x, "multiscale:0.5")
