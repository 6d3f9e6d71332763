"""Cost formulas per aten op: multiply-accumulates (MACs) and floating-point operations (FLOPs).

MACs count only the weight multiply-adds of convolution, linear and matmul-family ops, bias excluded: the unit
of the papers, the EECS 498 tables and torchvision's "GFLOPS" (its weights metadata, `_ops`). FLOPs count everything:

    op                                   MACs                              FLOPs
    convolution (N,Cin,*in)->(N,Cout,*out) N*Cout*prod(out) * Cin/g*prod(k)  2*MACs (+ out elems with bias)
    transposed conv (from the INPUT size)  N*Cin*prod(in) * Cout/g*prod(k)   2*MACs (+ out elems with bias)
    mm (m,k)@(k,n), addmm, mv, dot         m*n*k                             2*MACs (+ m*n for addmm)
    bmm (b,m,k)@(b,k,n), baddbmm           b*m*n*k                           2*MACs (+ b*m*n for baddbmm)
    fused scaled-dot-product attention     B*H*Lq*Lk*(E + Ev)                2*MACs + 5*B*H*Lq*Lk
    batch norm                             0                                 4/elem (+2/elem batch stats)
    layer / group norm                     0                                 6/elem (stats, normalise, affine)
    softmax, log-softmax                   0                                 5/elem (max, sub, exp, sum, div)
    max / avg pooling, window k            0                                 out elems * prod(k)
    adaptive pooling, mean/sum/amax/var    0                                 in elems
    pointwise (activations, add, mul, ...) 0                                 1/out elem
    bilinear / bicubic upsampling          0                                 4 / 16 per out elem
    data movement (views, cat, copy, pad)  0                                 0

Any other op has no formula: the counter lists it as unsupported instead of counting it as zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

aten = torch.ops.aten


class Window(NamedTuple):
    """A sliding-window op's geometry, per spatial axis: what the receptive field needs."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int | None = None
    transposed: bool = False


GLOBAL = "global"  # a spatial window over the whole map (global pooling): no receptive field to grow


def _prod(xs: Sequence[int]) -> int:
    return math.prod(int(x) for x in xs)


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _tuple(v: Any, n: int, default: Sequence[int] | None = None) -> tuple[int, ...]:
    if type(v) is list and len(v) == n and all(type(x) is int for x in v):  # the usual aten argument
        return tuple(v)
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        v = default
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 else v


# ---- MAC ops: (args, kwargs, out) -> (macs, flops) ------------------------------------------------------


def _mm(args, kwargs, out):
    a, b = args[0], args[1]
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    return macs, 2 * macs


def _addmm(args, kwargs, out):
    a, b = args[1], args[2]
    m, n = a.shape[0], b.shape[1]
    macs = m * a.shape[1] * n
    return macs, 2 * macs + m * n


def _bmm(args, kwargs, out):
    a, b = args[0], args[1]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return macs, 2 * macs


def _baddbmm(args, kwargs, out):
    a, b = args[1], args[2]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return macs, 2 * macs + a.shape[0] * a.shape[1] * b.shape[2]


def _mv(args, kwargs, out):
    a = args[0]
    macs = a.shape[0] * a.shape[1]
    return macs, 2 * macs


def _addmv(args, kwargs, out):
    a = args[1]
    macs = a.shape[0] * a.shape[1]
    return macs, 2 * macs + a.shape[0]


def _dot(args, kwargs, out):
    macs = args[0].numel()
    return macs, 2 * macs


def _conv(args, kwargs, out):
    x, w, bias = args[0], args[1], args[2]
    transposed = bool(args[6])
    if transposed:
        # weight is (Cin, Cout/g, *k): every INPUT element is multiplied into Cout/g * prod(k) outputs.
        macs = x.numel() * _prod(w.shape[1:])
    else:
        # weight is (Cout, Cin/g, *k): every OUTPUT element is a dot product of length Cin/g * prod(k).
        macs = _first(out).numel() * _prod(w.shape[1:])
    return macs, 2 * macs + (_first(out).numel() if bias is not None else 0)


def _sdpa(args, kwargs, out):
    q, k, v = args[0], args[1], args[2]
    *batch, lq, e = q.shape
    lk, ev = k.shape[-2], v.shape[-1]
    scores = _prod(batch) * lq * lk
    macs = scores * e + scores * ev  # Q K^T, then P V
    return macs, 2 * macs + 5 * scores  # + scaling and softmax on the scores


MAC_OPS: dict[Any, Callable] = {
    aten.mm: _mm,
    aten.addmm: _addmm,
    aten.bmm: _bmm,
    aten.baddbmm: _baddbmm,
    aten.mv: _mv,
    aten.addmv: _addmv,
    aten.dot: _dot,
    aten.vdot: _dot,
    aten.convolution: _conv,
    aten._convolution: _conv,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa,
    aten._scaled_dot_product_flash_attention: _sdpa,
    aten._scaled_dot_product_efficient_attention: _sdpa,
    aten._scaled_dot_product_cudnn_attention: _sdpa,
}

# Ops whose two operands may both be activations that mix positions (attention scores): see receptive.py.
MATMUL_OPS = frozenset(MAC_OPS) - {aten.convolution, aten._convolution}


# ---- other ops: (args, kwargs, out) -> flops ------------------------------------------------------------


def _batch_norm(args, kwargs, out):
    x = args[0]
    training = bool(args[5]) if len(args) > 5 else False
    return x.numel() * (6 if training else 4)


def _batch_norm_legit(args, kwargs, out):  # the variant that always computes batch statistics
    return args[0].numel() * 6


def _stats_norm(args, kwargs, out):  # layer / group norm: statistics, normalise, affine
    return args[0].numel() * 6


def _softmax(args, kwargs, out):
    return args[0].numel() * 5


def _window_flops(args, kwargs, out):
    x = args[0]
    n = _spatial_dims(x, args[1])
    return _first(out).numel() * _prod(_tuple(args[1], n))


def _in_elems(args, kwargs, out):
    return args[0].numel()


def _out_elems(args, kwargs, out):
    return _first(out).numel()


def _bilinear(args, kwargs, out):
    return 4 * _first(out).numel()


def _bicubic(args, kwargs, out):
    return 16 * _first(out).numel()


def _zero(args, kwargs, out):
    return 0


FLOP_OPS: dict[Any, Callable] = {
    aten.native_batch_norm: _batch_norm,
    aten._native_batch_norm_legit: _batch_norm_legit,
    aten._native_batch_norm_legit_functional: _batch_norm_legit,
    aten._native_batch_norm_legit_no_training: lambda a, k, o: a[0].numel() * 4,
    aten.native_layer_norm: _stats_norm,
    aten.native_group_norm: _stats_norm,
    aten._softmax: _softmax,
    aten._log_softmax: _softmax,
    aten._safe_softmax: _softmax,
    aten.max_pool1d: _window_flops,
    aten.max_pool2d: _window_flops,
    aten.max_pool3d: _window_flops,
    aten.max_pool2d_with_indices: _window_flops,
    aten.max_pool3d_with_indices: _window_flops,
    aten.avg_pool1d: _window_flops,
    aten.avg_pool2d: _window_flops,
    aten.avg_pool3d: _window_flops,
    aten._adaptive_avg_pool2d: _in_elems,
    aten._adaptive_avg_pool3d: _in_elems,
    aten.adaptive_avg_pool1d: _in_elems,
    aten.adaptive_max_pool1d: _in_elems,
    aten.adaptive_max_pool2d: _in_elems,
    aten.adaptive_max_pool3d: _in_elems,
    aten.mean: _in_elems,
    aten.sum: _in_elems,
    aten.amax: _in_elems,
    aten.amin: _in_elems,
    aten.max: _in_elems,
    aten.min: _in_elems,
    aten.var: _in_elems,
    aten.var_mean: _in_elems,
    aten.std: _in_elems,
    aten.std_mean: _in_elems,
    aten.norm: _in_elems,
    aten.linalg_vector_norm: _in_elems,
    aten.cumsum: _in_elems,
    aten.logsumexp: _in_elems,
    aten.upsample_bilinear2d: _bilinear,
    aten.upsample_bicubic2d: _bicubic,
    # activations and dropout that are not tagged pointwise in aten
    aten.hardswish: _out_elems,
    aten.hardswish_: _out_elems,
    aten.native_dropout: _out_elems,
}

# Data movement, views, factories and RNG: no arithmetic, so zero FLOPs by definition (not by omission).
ZERO_OPS = frozenset(
    {
        aten.view, aten._unsafe_view, aten.reshape, aten._reshape_alias, aten.permute, aten.transpose,
        aten.t, aten.expand, aten.squeeze, aten.unsqueeze, aten.flatten, aten.unflatten, aten.cat,
        aten.stack, aten.split, aten.split_with_sizes, aten.chunk, aten.slice, aten.select, aten.unbind,
        aten.narrow, aten.alias, aten.detach, aten.clone, aten.copy_, aten._to_copy, aten.contiguous,
        aten.lift_fresh, aten.lift_fresh_copy, aten.as_strided, aten.as_strided_, aten.constant_pad_nd,
        aten.reflection_pad1d, aten.reflection_pad2d, aten.reflection_pad3d, aten.replication_pad1d,
        aten.replication_pad2d, aten.replication_pad3d, aten.empty, aten.empty_like, aten.empty_strided,
        aten.zeros, aten.zeros_like, aten.ones, aten.ones_like, aten.full, aten.full_like, aten.arange,
        aten.linspace, aten.scalar_tensor, aten.fill_, aten.zero_, aten.new_empty, aten.new_empty_strided,
        aten.new_zeros, aten.new_ones, aten.new_full, aten.roll, aten.flip, aten.repeat, aten.pixel_shuffle,
        aten.pixel_unshuffle, aten.channel_shuffle, aten.native_channel_shuffle, aten.index, aten.index_select,
        aten.gather, aten.embedding, aten.unfold, aten.im2col, aten.col2im, aten.index_put, aten.index_put_,
        aten._unsafe_index, aten.masked_select, aten.upsample_nearest1d, aten.upsample_nearest2d,
        aten.upsample_nearest3d, aten._upsample_nearest_exact2d, aten.bernoulli, aten.bernoulli_,
        aten.rand, aten.randn, aten.rand_like, aten.randn_like, aten.randint, aten.uniform_, aten.normal_,
        aten.exponential_, aten.view_as_real, aten.view_as_complex, aten.diagonal, aten.tril, aten.triu,
        aten.set_, aten.resize_, aten.sym_size, aten.sym_stride, aten.sym_numel, aten.expand_as,
        aten._local_scalar_dense, aten.select_scatter, aten.slice_scatter,
    }
)  # fmt: skip


@dataclass(frozen=True)
class OpCost:
    macs: int
    flops: int


def _pointwise(args, kwargs, out):
    first = _first(out)
    return 0, first.numel() if isinstance(first, torch.Tensor) else 0


def _no_cost(args, kwargs, out):
    return 0, 0


def cost_function(func: torch._ops.OpOverload) -> Callable | None:
    """`(args, kwargs, out) -> (macs, flops)` for an aten op, or None when it has no formula."""
    packet = func.overloadpacket
    if (f := MAC_OPS.get(packet)) is not None:
        return f
    if packet in ZERO_OPS:
        return _no_cost
    if (g := FLOP_OPS.get(packet)) is not None:
        return lambda args, kwargs, out: (0, g(args, kwargs, out))
    if torch.Tag.pointwise in func.tags:
        return _pointwise
    return None


def op_cost(func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any) -> OpCost | None:
    """The cost of one call of an aten op, or None when the op has no formula (so it is reported)."""
    f = cost_function(func)
    if f is None:
        return None
    macs, flops = f(args, kwargs, out)
    return OpCost(int(macs), int(flops))


# ---- geometry for the receptive field ------------------------------------------------------------------


def _spatial_dims(x: torch.Tensor, kernel: Any) -> int:
    if isinstance(kernel, (list, tuple)) and len(kernel) > 1:
        return len(kernel)
    return max(1, min(x.dim() - 2, 3)) if x.dim() >= 3 else 1


_POOL_SPATIAL = {
    aten.max_pool1d: 1, aten.max_pool2d: 2, aten.max_pool3d: 3, aten.max_pool2d_with_indices: 2,
    aten.max_pool3d_with_indices: 3, aten.avg_pool1d: 1, aten.avg_pool2d: 2, aten.avg_pool3d: 3,
}  # fmt: skip
_ADAPTIVE = {
    aten._adaptive_avg_pool2d: 2, aten._adaptive_avg_pool3d: 3, aten.adaptive_avg_pool1d: 1,
    aten.adaptive_max_pool1d: 1, aten.adaptive_max_pool2d: 2, aten.adaptive_max_pool3d: 3,
}  # fmt: skip


def window(func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any) -> Window | str | None:
    """The sliding window of a conv or pooling call; GLOBAL for pooling to a single position; else None."""
    packet = func.overloadpacket
    if packet in (aten.convolution, aten._convolution):
        w = args[1]
        n = w.dim() - 2
        return Window(
            kernel=tuple(int(k) for k in w.shape[2:]),
            stride=_tuple(args[3], n),
            padding=_tuple(args[4], n),
            dilation=_tuple(args[5], n),
            groups=int(args[8]),
            transposed=bool(args[6]),
        )
    if (n := _POOL_SPATIAL.get(packet)) is not None:
        kernel = _tuple(args[1], n)
        stride = _tuple(args[2] if len(args) > 2 else kwargs.get("stride"), n, kernel)
        padding = _tuple(args[3] if len(args) > 3 else kwargs.get("padding", 0), n)
        is_max = packet in (aten.max_pool1d, aten.max_pool2d, aten.max_pool3d) or "with_indices" in str(packet)
        dilation = _tuple(args[4] if is_max and len(args) > 4 else 1, n)
        return Window(kernel, stride, padding, dilation)
    if (n := _ADAPTIVE.get(packet)) is not None:
        x = args[0]
        ins = tuple(int(s) for s in x.shape[-n:])
        outs = tuple(int(s) for s in _first(out).shape[-n:])
        if all(o == 1 for o in outs):
            return GLOBAL
        if ins == outs:
            return Window((1,) * n, (1,) * n, (0,) * n, (1,) * n)
        # Adaptive windows vary in size; the largest window and the mean step bound the receptive field.
        kernel = tuple(max(-(-(j + 1) * i // o) - (j * i // o) for j in range(o)) for i, o in zip(ins, outs))
        stride = tuple(max(1, i // o) for i, o in zip(ins, outs))
        return Window(kernel, stride, (0,) * n, (1,) * n)
    return None


def is_spatial_reduction(func: torch._ops.OpOverload, args: tuple, out: Any) -> bool:
    """mean/sum/amax over the last two axes of a feature map (the functional global pooling)."""
    if func.overloadpacket not in (aten.mean, aten.sum, aten.amax, aten.amin):
        return False
    x = args[0]
    if not isinstance(x, torch.Tensor) or x.dim() < 3 or len(args) < 2 or args[1] is None:
        return False
    dims = args[1] if isinstance(args[1], (list, tuple)) else (args[1],)
    dims = {d % x.dim() for d in dims}
    return {x.dim() - 1, x.dim() - 2} <= dims
