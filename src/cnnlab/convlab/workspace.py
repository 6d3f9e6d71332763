"""Workspace: the intermediate buffers each algorithm materialises, from a formula, and a guard.

`workspace_bytes` predicts, per algorithm, the bytes of the named buffers the implementation holds at once
(padded input, columns, spectra, Winograd's V/U/M, ...); inputs, weights and the returned output are not
counted, nor are short-lived temporaries inside single torch ops. Every implementation calls `record` on
each such buffer, so `capture()` lets a test compare the formula with the real tensors' bytes.

`guard` refuses, before allocating, a workspace over the limit (default 2 GiB; change it with
`workspace_limit(...)` or `set_workspace_limit(...)`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from cnnlab.convlab._common import ConvGeometry, IntOrPair, Padding, fast_len, geometry
from cnnlab.errors import CnnlabError, UnknownNameError

DEFAULT_LIMIT_BYTES = 2 * 1024**3
ALGORITHMS = ("direct", "im2col", "fft", "winograd2", "winograd4", "winograd6")

_limit_bytes = DEFAULT_LIMIT_BYTES
_captures: list[list[tuple[str, int]]] = []


class WorkspaceLimitError(CnnlabError, MemoryError):
    """A convolution's workspace would exceed the configured limit."""


def _elem_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _half_to_float(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _formula(algorithm: str, g: ConvGeometry, dtype: torch.dtype) -> int:
    e = _elem_bytes(dtype)
    n, c, k, cg = g.n, g.c_in, g.c_out, g.c_in // g.groups
    hp, wp = g.padded_hw
    ho, wo = g.out_hw
    padded = n * c * hp * wp if any(g.pad) else 0
    if algorithm == "direct":
        acc = _elem_bytes(_half_to_float(dtype))
        return padded * e + n * k * ho * wo * acc
    if algorithm == "im2col":
        from cnnlab.convlab.im2col import samples_per_chunk

        per_sample = c * g.kh * g.kw * ho * wo * e
        return padded * e + samples_per_chunk(per_sample, n) * per_sample
    if algorithm == "fft":
        ce = _elem_bytes(_half_to_float(dtype))
        upcast = (n * c * g.h * g.w + k * cg * g.kh * g.kw) * ce if ce != e else 0
        ekh, ekw = g.eff_kernel
        dilated = k * cg * ekh * ekw if g.dilation != (1, 1) else 0
        hf, wf = fast_len(hp), fast_len(wp)
        bins = hf * (wf // 2 + 1)
        # input and weight spectra, each also permuted for the matmul; output spectrum, permuted back
        spectra_complex = 2 * (n * c * bins) + 2 * (k * cg * bins) + 2 * (n * k * bins)
        return upcast + (padded + dilated + n * k * hf * wf) * ce + spectra_complex * 2 * ce
    if algorithm.startswith("winograd"):
        m = int(algorithm[len("winograd") :])
        alpha = m + 2
        n_h, n_w = -(-ho // m), -(-wo // m)
        tiles = n * n_h * n_w
        padded_tiles = n * c * (n_h * m + 2) * (n_w * m + 2)
        # input tiles gathered, after the row transform, after the column transform (V)
        data = 3 * alpha**2 * tiles * c
        from cnnlab.convlab.winograd import REORDER_FILTERS_BYTES

        reordered = 9 * k * cg if cg * (k // g.groups) * e >= REORDER_FILTERS_BYTES else 0
        filters = alpha**2 * k * cg + reordered  # U, and the filters reordered for it when large
        products = alpha**2 * tiles * k  # M
        # M after the row transform, after the column transform, then stitched into an image
        outputs = m * alpha * tiles * k + 2 * m * m * tiles * k
        return (padded_tiles + data + filters + products + outputs) * e
    raise UnknownNameError("convolution algorithm", algorithm, ALGORITHMS)


def workspace_bytes(
    algorithm: str,
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    dtype: torch.dtype = torch.float32,
) -> int:
    """Bytes of the intermediate buffers `algorithm` creates for F.conv2d-style arguments."""
    if algorithm not in ALGORITHMS:
        raise UnknownNameError("convolution algorithm", algorithm, ALGORITHMS)
    return _formula(algorithm, geometry(input_shape, weight_shape, stride, padding, dilation, groups), dtype)


def get_workspace_limit() -> int:
    return _limit_bytes


def set_workspace_limit(limit_bytes: int) -> None:
    global _limit_bytes
    if limit_bytes <= 0:
        raise ValueError(f"workspace limit must be positive, got {limit_bytes}")
    _limit_bytes = int(limit_bytes)


@contextlib.contextmanager
def workspace_limit(limit_bytes: int) -> Iterator[None]:
    """Temporarily set the workspace limit."""
    old = _limit_bytes
    set_workspace_limit(limit_bytes)
    try:
        yield
    finally:
        set_workspace_limit(old)


def guard(algorithm: str, geo: ConvGeometry, dtype: torch.dtype) -> int:
    """Raise WorkspaceLimitError if `algorithm` would need more than the limit; else return its bytes."""
    need = _formula(algorithm, geo, dtype)
    if need > _limit_bytes:
        gib = 1024**3
        raise WorkspaceLimitError(
            f"convolution algorithm '{algorithm}' needs a {need / gib:.2f} GiB workspace for input "
            f"{(geo.n, geo.c_in, geo.h, geo.w)} and weight {(geo.c_out, geo.c_in // geo.groups, geo.kh, geo.kw)}, "
            f"over the {_limit_bytes / gib:.2f} GiB limit; use a smaller batch, another algorithm, or "
            "convlab.workspace_limit(...)"
        )
    return need


def record(name: str, tensor: torch.Tensor) -> None:
    """Debug hook: note a buffer an implementation created (no cost unless `capture()` is active)."""
    if _captures:
        _captures[-1].append((name, tensor.numel() * tensor.element_size()))


def peak_bytes(records: list[tuple[str, int]]) -> int:
    """Bytes live at once: a name recorded several times (im2col's per-chunk columns) is one reused buffer."""
    largest: dict[str, int] = {}
    for name, nbytes in records:
        largest[name] = max(largest.get(name, 0), nbytes)
    return sum(largest.values())


@contextlib.contextmanager
def capture() -> Iterator[list[tuple[str, int]]]:
    """Collect (buffer name, bytes) for every buffer recorded inside the block."""
    found: list[tuple[str, int]] = []
    _captures.append(found)
    try:
        yield found
    finally:
        _captures.remove(found)
