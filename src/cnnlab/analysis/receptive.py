"""Receptive fields on the graph (Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019).

Every activation carries, per spatial axis, (size r, jump j, start u): the field's size in input pixels, the
distance in input pixels between neighbouring positions (the cumulative stride), and the centre of the first
position's field in input coordinates (input pixel i has centre i). A window (kernel k, stride s, padding p,
dilation d) maps them as

    r' = r + (k - 1) * d * j        j' = j * s        u' = u + ((k - 1) * d / 2 - p) * j

Ops with several inputs (add, mul, cat, ...) take the maximum size over their inputs: the field of a branching
network is the largest over all paths. When inputs disagree on jump or start the branches look at misaligned
grids (their fields are not centred on the same pixels) and the analyzer warns.

A field is tied to the trailing tensor axes it covers (`RField.dims`), not to an axis count. Reshapes that
move other axes next to them, as `F.local_response_norm` does on a 5-D input ((N,C,D,H,W) -> (N,1,C,D,H*W), then
a (n,1,1) average pool over channels), are followed: a window, pad or crop on axes outside the field is not
spatial and leaves it unchanged.

Global context (pooling to one position, SE gates, attention between two activations) is marked GLOBAL and left
out of the maximum, as in Araujo et al., who follow conv/pool paths only; a report says when this happened.
"""

from __future__ import annotations

from typing import NamedTuple

from cnnlab.analysis.formulas import GLOBAL, Window


class RField(NamedTuple):  # a named tuple, not a frozen dataclass: made for every op, 10x faster to build
    size: tuple[float, ...]
    jump: tuple[float, ...]
    start: tuple[float, ...]
    # How many trailing tensor axes the field covers. 0: one per entry, the usual case. Otherwise a reshape has
    # merged or split the tracked axes (the entries then have no one-to-one axis).
    span: int = 0

    @property
    def dims(self) -> int:
        """The number of trailing tensor axes this field covers."""
        return self.span or len(self.size)

    @property
    def aligned(self) -> bool:
        """True when each entry is one trailing tensor axis."""
        return self.span == 0 or self.span == len(self.size)

    @property
    def max_size(self) -> int | float:
        return _num(max(self.size))

    @property
    def max_jump(self) -> int | float:
        return _num(max(self.jump))


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else round(float(x), 3)


def input_field(n_axes: int) -> RField:
    return RField((1.0,) * n_axes, (1.0,) * n_axes, (0.0,) * n_axes)


def _axes(rf: RField, n: int) -> RField:
    """The last `n` axes of a field (a 1-D window over a 2-D map's last axis uses its last entry)."""
    if len(rf.size) == n:
        return rf
    if len(rf.size) > n:
        return RField(rf.size[-n:], rf.jump[-n:], rf.start[-n:])
    pad = n - len(rf.size)
    return RField(rf.size[:1] * pad + rf.size, rf.jump[:1] * pad + rf.jump, rf.start[:1] * pad + rf.start)


def _trivial(w: Window) -> bool:
    return all(k == 1 and s == 1 and p == 0 for k, s, p in zip(w.kernel, w.stride, w.padding))


def _last(w: Window, n: int) -> Window:
    return Window(w.kernel[-n:], w.stride[-n:], w.padding[-n:], w.dilation[-n:], w.groups, w.transposed)


def apply_window(rf: RField, w: Window) -> RField:
    """The field after a sliding window over the trailing `len(w.kernel)` axes of the tensor carrying `rf`."""
    d = rf.dims
    if len(w.kernel) > d:
        # Window axes in front of the field's axes are not spatial: LRN pools over channels this way.
        w = _last(w, d)
    if _trivial(w):
        return rf
    if not rf.aligned:
        # A window over axes that a reshape merged has no exact field: approximated on the trailing entries.
        rf = RField(rf.size, rf.jump, rf.start)
    if len(w.kernel) < len(rf.size):  # a window over the last axes only: the leading ones are unchanged
        k = len(rf.size) - len(w.kernel)
        head = RField(rf.size[:k], rf.jump[:k], rf.start[:k])
        tail = apply_window(RField(rf.size[k:], rf.jump[k:], rf.start[k:]), w)
        return RField(head.size + tail.size, head.jump + tail.jump, head.start + tail.start)
    rf = _axes(rf, len(w.kernel))
    size, jump, start = [], [], []
    for r, j, u, k, s, p, d in zip(rf.size, rf.jump, rf.start, w.kernel, w.stride, w.padding, w.dilation):
        span = (k - 1) * d
        if w.transposed:
            # Output o gathers inputs i with i*s - p + kk*d = o: about span/s + 1 of them, at jump j/s.
            size.append(r + span / s * j)
            jump.append(j / s)
            start.append(u + (p - span / 2) / s * j)
        else:
            size.append(r + span * j)
            jump.append(j * s)
            start.append(u + (span / 2 - p) * j)
    return RField(tuple(size), tuple(jump), tuple(start))


def shift(rf: RField, axis: int, offset: int, step: int = 1) -> RField:
    """Cropping or padding (`offset` positions dropped at the start; negative when padded) and subsampling by
    `step` along one tracked axis (counted from the first spatial axis)."""
    jump, start = list(rf.jump), list(rf.start)
    start[axis] += offset * jump[axis]
    jump[axis] *= step
    return rf._replace(jump=tuple(jump), start=tuple(start))


def reshaped(rf: RField, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> RField:
    """The field after a view/reshape from `in_shape` to `out_shape`: which trailing axes now hold it."""
    d = rf.dims
    if d > len(in_shape) or tuple(out_shape[-d:]) == tuple(in_shape[-d:]):
        return rf  # axes added or removed in front of the field (unsqueeze, squeeze, flatten(0, 1))
    block = 1
    for s in in_shape[-d:]:
        block *= s
    p = 1
    for m in range(1, len(out_shape) + 1):
        p *= out_shape[-m]
        if p == block:  # the trailing m axes hold exactly the tracked ones, merged or split
            return rf._replace(span=0 if m == len(rf.size) else m)
        if p > block:
            break
    return rf  # mixed with other axes (flattened to a vector): nothing spatial left to follow


def rescale(rf: RField, in_sizes: tuple[int, ...], out_sizes: tuple[int, ...]) -> RField:
    """Nearest/bilinear resampling: same field, positions `in/out` times as far apart."""
    rf = _axes(RField(rf.size, rf.jump, rf.start), len(in_sizes))
    jump = tuple(j * i / o for j, i, o in zip(rf.jump, in_sizes, out_sizes))
    return RField(rf.size, jump, rf.start)


def merge(fields: list) -> tuple[RField | str | None, bool, bool]:
    """Combine the fields of an op's inputs: (field, misaligned, saw_global).

    Non-spatial inputs (None: weights, constants) are ignored; GLOBAL inputs are ignored unless all are GLOBAL.
    """
    spatial = [f for f in fields if isinstance(f, RField)]
    saw_global = any(f is GLOBAL for f in fields)
    if not spatial:
        return (GLOBAL if saw_global else None), False, saw_global
    if len(spatial) == 1:
        return spatial[0], False, saw_global
    n = min(len(f.size) for f in spatial)  # spatial axes are the trailing ones: compare those
    same = all(f.span == spatial[0].span and len(f.size) == n for f in spatial)
    span = spatial[0].span if same else 0
    spatial = [_axes(f, n) for f in spatial]
    best = max(spatial, key=lambda f: max(f.size))
    size = tuple(max(f.size[a] for f in spatial) for a in range(n))
    misaligned = any(
        abs(f.jump[a] - best.jump[a]) > 1e-9 or abs(f.start[a] - best.start[a]) > 1e-9
        for f in spatial
        for a in range(n)
    )
    return RField(size, best.jump, best.start, span), misaligned, saw_global
