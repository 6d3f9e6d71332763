"""Workspace: the intermediate buffers each algorithm materialises, from a formula, and a guard.

`workspace_bytes` predicts, per algorithm, the bytes of the named buffers the implementation holds at once
(padded input, columns, spectra, Winograd's V/U/M, ...); inputs, weights and the returned output are not
counted, nor are short-lived temporaries inside single torch ops. Every implementation calls `record` on
each such buffer, so `capture()` lets a test compare the formula with the real tensors' bytes.

Each algorithm owns its formula, beside the code whose buffers it counts, and registers it here with
`register_formula` when its module is imported (cnnlab/convlab/__init__.py imports them all, and Python runs
that before any submodule). This module imports none of them: the algorithms import it, never the reverse.

`guard` refuses, before allocating, a workspace over the limit (default 2 GiB; change it with
`workspace_limit(...)` or `set_workspace_limit(...)`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from cnnlab.convlab._common import ConvGeometry, IntOrPair, Padding, geometry
from cnnlab.errors import CnnlabError, UnknownNameError

DEFAULT_LIMIT_BYTES = 2 * 1024**3

# A workspace formula: bytes of the buffers one algorithm holds at once, from shapes alone (no tensors).
Formula = Callable[[ConvGeometry, torch.dtype], int]

_formulas: dict[str, Formula] = {}  # algorithm name -> its formula, filled by register_formula
_limit_bytes = DEFAULT_LIMIT_BYTES
_captures: list[list[tuple[str, int]]] = []


class WorkspaceLimitError(CnnlabError, MemoryError):
    """A convolution's workspace would exceed the configured limit."""


def register_formula(algorithm: str, formula: Formula) -> None:
    """Make `formula` the workspace formula of `algorithm`; a name registered twice raises."""
    if algorithm in _formulas:
        raise RuntimeError(f"convolution algorithm '{algorithm}' has a workspace formula already")
    _formulas[algorithm] = formula


def elem_bytes(dtype: torch.dtype) -> int:
    """Bytes of one element of `dtype`."""
    return torch.empty((), dtype=dtype).element_size()


def padded_input_elems(g: ConvGeometry) -> int:
    """Elements of the zero-padded copy of the input (N, C, Hp, Wp); 0 when there is no padding (no copy)."""
    hp, wp = g.padded_hw
    return g.n * g.c_in * hp * wp if any(g.pad) else 0


def _formula(algorithm: str, g: ConvGeometry, dtype: torch.dtype) -> int:
    if algorithm not in _formulas:
        raise UnknownNameError("convolution algorithm", algorithm, _formulas)
    return _formulas[algorithm](g, dtype)


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
    if algorithm not in _formulas:  # checked before the arguments, as ever
        raise UnknownNameError("convolution algorithm", algorithm, _formulas)
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
