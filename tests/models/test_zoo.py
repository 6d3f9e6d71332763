"""Properties every registered model must have, parametrized over the registry."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.models.base import AuxOutputs
from cnnlab.registry import get_entry
from tests.conftest import registry_params

ALL = cnnlab.list_models()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kw) -> torch.nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name, **kw)


@pytest.mark.parametrize("name", registry_params(ALL))
def test_forward_backward_small_input(name: str):
    info = cnnlab.model_info(name)
    model = cnnlab.create_model(name, num_classes=7)
    model.train()
    size = info.min_input_size
    x = torch.randn(2, info.input_size[0], size, size)
    out = model(x)
    outs = [out.logits, *out.aux] if isinstance(out, AuxOutputs) else [out]
    for o in outs:
        assert o.shape == (2, 7)
        assert torch.isfinite(o).all()
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.parametrize("name", ALL)
def test_published_param_count(name: str):
    published = cnnlab.model_info(name).published
    if published.params is None:
        pytest.skip("no published parameter count")
    entry = get_entry(name)
    assert n_params(meta_model(name, num_classes=entry.family.default_num_classes(name, entry.spec))) == (
        published.params
    )


@pytest.mark.parametrize("name", ALL)
def test_anatomy_and_stage_info(name: str):
    """Declared stage channels and cumulative strides match a (meta-device) forward.

    The stride is measured exactly: growing the input by 8 x stride pixels grows that stage's output by 8.
    """
    info = cnnlab.model_info(name)
    model = meta_model(name)
    model.eval()
    for attr in ("stem", "stages", "head", "features", "reset_head", "stage_info"):
        assert hasattr(model, attr)
    assert len(model.stage_info) == len(model.stages)
    c, h, w = info.input_size
    grow = 8 * model.stage_info[-1].stride
    x = model.stem(torch.empty(1, c, h, w, device="meta"))
    y = model.stem(torch.empty(1, c, h + grow, w + grow, device="meta"))
    for stage, declared in zip(model.stages, model.stage_info):
        x, y = stage(x), stage(y)
        assert x.shape[1] == declared.channels, declared
        assert (y.shape[2] - x.shape[2]) * declared.stride == grow, (declared, tuple(x.shape), tuple(y.shape))
    model.reset_head(5)
    assert model.head.num_classes == 5
    out = model(torch.empty(1, c, h, w, device="meta"))
    assert out.shape == (1, 5)


@pytest.mark.parametrize("name", ALL)
def test_min_input_size_is_enforced(name: str):
    info = cnnlab.model_info(name)
    model = meta_model(name).eval()
    c, m = info.input_size[0], info.min_eval_input_size  # eval mode: auxiliary heads (inception_v3) do not run
    assert model(torch.empty(1, c, m, m, device="meta")).shape[0] == 1
    with pytest.raises(ValueError, match=f"{name}.*{m}"):
        model(torch.empty(1, c, m - 1, m - 1, device="meta"))


def test_unknown_override_names_the_key():
    name = ALL[0]
    with pytest.raises(TypeError, match="no_such_field"):
        cnnlab.create_model(name, no_such_field=1)


def test_unknown_model_suggests_close_names():
    from cnnlab.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean"):
        cnnlab.create_model(ALL[0][:-1] + "x")


def test_list_models_is_sorted_and_filters():
    assert ALL == sorted(ALL)
    assert all(n.startswith("vgg") for n in cnnlab.list_models("vgg*"))
