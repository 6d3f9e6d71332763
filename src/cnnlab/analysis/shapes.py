"""Output shapes for the ops whose meta kernels are slow Python decompositions.

Batch norm, layer norm, in-place activations and addmm run through `torch._refs` on the meta device at
1-5 ms a call: most of an analysis's time. These formulas give the same outputs (shape, dtype, strides) in
microseconds. Any argument they do not recognise falls back to the real meta kernel, which also produces the
real error message; tests compare every formula with the meta kernel (the slow oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten
FALLBACK = object()  # "run the meta kernel"


def _like(x: torch.Tensor) -> torch.Tensor:
    """`empty_like` for the usual layouts without its slow Python meta decomposition."""
    if x.is_contiguous():
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    return torch.empty_like(x)


def _conv(args: tuple, kwargs: dict) -> Any:
    x, w, bias, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    n = w.dim() - 2
    # Other layouts follow backend-dependent memory-format rules: leave them to the kernel.
    if not (x.is_contiguous() and w.is_contiguous()):
        return FALLBACK
    if x.dim() != n + 2 or n < 1 or len(stride) != n or len(padding) != n or len(dilation) != n:
        return FALLBACK
    k = w.shape[2:]
    if transposed:
        if x.shape[1] != w.shape[0] or len(output_padding) != n:
            return FALLBACK
        cout = w.shape[1] * groups
        spatial = [
            (i - 1) * s - 2 * p + d * (kk - 1) + op + 1
            for i, s, p, d, kk, op in zip(x.shape[2:], stride, padding, dilation, k, output_padding)
        ]
    else:
        if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
            return FALLBACK
        cout = w.shape[0]
        spatial = [
            (i + 2 * p - d * (kk - 1) - 1) // s + 1 for i, s, p, d, kk in zip(x.shape[2:], stride, padding, dilation, k)
        ]
    if any(o <= 0 for o in spatial) or (bias is not None and tuple(bias.shape) != (cout,)):
        return FALLBACK  # the kernel raises the real error
    return torch.empty((x.shape[0], cout, *spatial), dtype=x.dtype, device=x.device)


def _binary_(args: tuple, kwargs: dict) -> Any:
    other = args[1]
    if isinstance(other, torch.Tensor) and (other.shape != args[0].shape or other.dtype != args[0].dtype):
        return FALLBACK  # broadcasting and promotion rules: the kernel checks them
    return args[0]


def _binary(args: tuple, kwargs: dict) -> Any:
    x, other = args[0], args[1]
    if not isinstance(other, torch.Tensor) or other.shape != x.shape or other.dtype != x.dtype:
        return FALLBACK
    return _like(x)


def _batch_norm(args: tuple, kwargs: dict) -> Any:
    x, w = args[0], args[1]
    if x.dim() < 2 or (w is not None and tuple(w.shape) != (x.shape[1],)):
        return FALLBACK
    stats = (x.shape[1],)
    return (
        _like(x),
        torch.empty(stats, dtype=x.dtype, device=x.device),
        torch.empty(stats, dtype=x.dtype, device=x.device),
    )


def _layer_norm(args: tuple, kwargs: dict) -> Any:
    x, shape, w = args[0], tuple(args[1]), args[2]
    n = len(shape)
    if tuple(x.shape[x.dim() - n :]) != shape or (w is not None and tuple(w.shape) != shape):
        return FALLBACK
    stats = tuple(x.shape[: x.dim() - n]) + (1,) * n
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # the meta kernel returns a contiguous output
    return out, torch.empty(stats, dtype=x.dtype, device=x.device), torch.empty(stats, dtype=x.dtype, device=x.device)


def _addmm(args: tuple, kwargs: dict) -> Any:
    bias, a, b = args[0], args[1], args[2]
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or not (a.dtype == b.dtype == bias.dtype):
        return FALLBACK
    m, n = a.shape[0], b.shape[1]
    bshape = tuple(bias.shape)
    if len(bshape) > 2 or any(s not in (1, t) for s, t in zip(reversed(bshape), (n, m))):
        return FALLBACK
    return torch.empty((m, n), dtype=a.dtype, device=a.device)


def _unary(args: tuple, kwargs: dict) -> Any:
    return _like(args[0])


def _unary_(args: tuple, kwargs: dict) -> Any:
    return args[0]  # in place: the result is `self`


def _softmax(args: tuple, kwargs: dict) -> Any:
    x = args[0]
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


SHAPE_FORMULAS: dict[Any, Callable[[tuple, dict], Any]] = {
    aten.native_batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten.native_layer_norm.default: _layer_norm,
    aten.addmm.default: _addmm,
    aten.convolution.default: _conv,
    aten.add_.Tensor: _binary_,
    aten.mul_.Tensor: _binary_,
    aten.add.Tensor: _binary,
    aten.mul.Tensor: _binary,
    aten._softmax.default: _softmax,
    aten._safe_softmax.default: _softmax,
    **{
        op: _unary
        for op in (
            aten.hardtanh.default, aten.relu.default, aten.gelu.default, aten.silu.default,
            aten.sigmoid.default, aten.tanh.default, aten.hardswish.default, aten.hardsigmoid.default,
            aten.elu.default, aten.leaky_relu.default,
        )
    },
    **{
        op: _unary_
        for op in (
            aten.hardtanh_.default, aten.relu_.default, aten.gelu_.default, aten.silu_.default,
            aten.sigmoid_.default, aten.tanh_.default, aten.hardswish_.default, aten.hardsigmoid_.default,
            aten.elu_.default, aten.leaky_relu_.default,
        )
    },
}  # fmt: skip


def run(func: torch._ops.OpOverload, args: tuple, kwargs: dict, fast: bool = True) -> Any:
    """The op's result: from a shape formula when `fast` and one applies, else from the meta kernel."""
    if fast and (f := SHAPE_FORMULAS.get(func)) is not None and args:
        x = args[0]
        # Integer inputs would need type promotion: leave them to the kernel.
        if isinstance(x, torch.Tensor) and x.is_meta and x.is_floating_point():
            out = f(args, kwargs)
            if out is not FALLBACK:
                return out
    return func(*args, **kwargs)
