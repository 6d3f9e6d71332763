"""The shape formulas (fast path) against the meta kernels (slow oracle)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.analysis import analyze, shapes
from tests.analysis.conftest import tv_model

aten = torch.ops.aten


def _meta(*shape, cl: bool = False):
    t = torch.empty(*shape, device="meta")
    return t.to(memory_format=torch.channels_last) if cl else t


def _same(a, b) -> None:
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
        return
    assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    assert a.stride() == b.stride()


w8 = _meta(8)
CASES = [
    (aten.native_batch_norm.default, (_meta(2, 8, 5, 5), w8, w8, _meta(8), _meta(8), False, 0.1, 1e-5)),
    (aten.native_batch_norm.default, (_meta(2, 8, 5, 5, cl=True), w8, w8, _meta(8), _meta(8), True, 0.1, 1e-5)),
    (aten.native_batch_norm.default, (_meta(4, 8), None, None, None, None, True, 0.1, 1e-5)),
    (aten._native_batch_norm_legit_no_training.default, (_meta(2, 8, 3, 3), w8, w8, _meta(8), _meta(8), 0.1, 1e-5)),
    (aten.native_layer_norm.default, (_meta(2, 7, 8), [8], w8, w8, 1e-5)),
    (aten.native_layer_norm.default, (_meta(2, 3, 4, 8), [4, 8], _meta(4, 8), None, 1e-5)),
    (aten.addmm.default, (_meta(5), _meta(3, 4), _meta(4, 5))),
    (aten.addmm.default, (_meta(3, 1), _meta(3, 4), _meta(4, 5))),
    (
        aten.convolution.default,
        (_meta(2, 4, 9, 9), _meta(8, 4, 3, 3), _meta(8), [2, 2], [1, 1], [1, 1], False, [0, 0], 1),
    ),
    (aten.convolution.default, (_meta(2, 4, 9, 9), _meta(8, 2, 3, 3), None, [1, 1], [0, 0], [2, 2], False, [0, 0], 2)),
    (aten.convolution.default, (_meta(2, 4, 7, 7), _meta(4, 3, 4, 4), None, [2, 2], [1, 1], [1, 1], True, [1, 1], 1)),
    (aten.convolution.default, (_meta(2, 4, 11), _meta(6, 4, 3), None, [2], [0], [1], False, [0], 1)),
    (aten.add_.Tensor, (_meta(2, 3), _meta(2, 3))),
    (aten.add.Tensor, (_meta(2, 3, 4, 4, cl=True), _meta(2, 3, 4, 4, cl=True))),
    (aten.mul.Tensor, (_meta(2, 3), _meta(2, 3))),
    (aten._softmax.default, (_meta(2, 5), -1, False)),
    (aten.hardtanh_.default, (_meta(2, 5), 0.0, 6.0)),
    (aten.gelu.default, (_meta(2, 5, 3).transpose(1, 2),)),
    (aten.relu.default, (_meta(1, 3, 4, 4, cl=True),)),
]


@pytest.mark.parametrize(("op", "args"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_formula_matches_the_meta_kernel(op, args):
    formula = shapes.SHAPE_FORMULAS[op]
    fast = formula(args, {})
    assert fast is not shapes.FALLBACK
    _same(fast, op(*args))


@pytest.mark.parametrize(
    ("op", "args"),
    [
        (
            aten.convolution.default,
            (_meta(1, 3, 2, 2), _meta(8, 3, 5, 5), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
        ),
        (
            aten.convolution.default,
            (_meta(1, 3, 8, 8), _meta(8, 4, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
        ),
        (aten.addmm.default, (_meta(5), _meta(3, 4), _meta(3, 5))),
        (aten.native_layer_norm.default, (_meta(2, 7, 8), [7], None, None, 1e-5)),
        (aten.add_.Tensor, (_meta(2, 3), _meta(3))),
        (
            aten.convolution.default,
            (_meta(1, 3, 8, 8, cl=True), _meta(8, 3, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
        ),
    ],
)
def test_formula_falls_back_where_the_kernel_decides(op, args):
    assert shapes.SHAPE_FORMULAS[op](args, {}) is shapes.FALLBACK


def _fast_vs_slow(model, **kw):
    fast = analyze(model, fast=True, **kw).to_dict()
    slow = analyze(model, fast=False, **kw).to_dict()
    assert fast == slow


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "vit_b_16"])
def test_reports_match_without_shape_formulas(name):
    _fast_vs_slow(tv_model(name))


def test_reports_match_channels_last_and_transposed():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.Hardtanh(0, 6, inplace=True),
        nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), nn.GELU(), nn.Flatten(), nn.LayerNorm(4 * 16 * 16),
    )  # fmt: skip
    model = model.to(memory_format=torch.channels_last)
    _fast_vs_slow(model, inputs=torch.empty(2, 3, 16, 16).to(memory_format=torch.channels_last))
    _fast_vs_slow(model, input_size=(3, 16, 16), train=True, batch_size=2)


def test_module_shortcuts_match_the_real_forward():
    # Stock Conv2d / eval BatchNorm2d / ReLU modules hand their op to the session directly in the counting
    # forward; every variant the shortcut must refuse (and run for real) is here too, compared with the slow path.
    class Sub(nn.Conv2d):  # a subclass may override anything: never short-cut
        pass

    def model(momentum: float | None) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding="same"), nn.BatchNorm2d(8, momentum=momentum), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=2, padding_mode="reflect", dilation=2),
            nn.BatchNorm2d(8, track_running_stats=False), nn.ReLU(inplace=True),
            Sub(8, 8, 3, stride=2, groups=4, bias=False), nn.BatchNorm2d(8, affine=False), nn.Conv2d(8, 4, 1),
        )  # fmt: skip

    # The first run of some meta kernels in a process keeps its inputs alive a little longer (torch's lazy
    # set-up), which raises the slow path's peak once: warm them up first.
    analyze(model(None).eval(), (3, 16, 16), batch_size=2, fast=False)
    analyze(model(0.1), (3, 16, 16), batch_size=2, fast=False, train=True)
    _fast_vs_slow(model(None).eval(), input_size=(3, 16, 16), batch_size=2)
    _fast_vs_slow(model(0.1), input_size=(3, 16, 16), batch_size=2, train=True)
    # unbatched input: the shortcut leaves it to Conv2d's own forward
    _fast_vs_slow(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), inputs=torch.zeros(3, 8, 8))


def test_counting_forward_leaves_the_twin_unwrapped():
    from cnnlab.analysis.api import _run
    from cnnlab.analysis.counter import meta_twin

    twin = meta_twin(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), training=False)
    _run(twin, (torch.empty(1, 3, 8, 8, device="meta"),), {}, True, False, saved=False)
    assert all("forward" not in m.__dict__ for m in twin.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in twin.modules())
