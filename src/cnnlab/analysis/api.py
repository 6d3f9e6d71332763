"""`analyze`: the per-layer table of any model, counted where the ops really run, on the meta device."""

from __future__ import annotations

import contextlib
import gc
import importlib
import warnings
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from cnnlab.analysis.counter import CountingMode, Session, _tensors, meta_twin
from cnnlab.analysis.report import Report, Row
from cnnlab.errors import CnnlabError

# Extra copies of the trainable parameters that an optimizer keeps.
OPTIMIZER_COPIES = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}
_LARGEST_SEARCHED = 4096  # pixels: where the search for a working input size gives up


class _SkipInit(TorchDispatchMode):
    """While a model is built on meta, in-place initialisers (uniform_, normal_, fill_, ...) have nothing to
    write, yet several run as slow Python decompositions on meta: return `self` unchanged instead. Ops that
    change a tensor's shape in place (resize_, t_) still run."""

    _plans: dict[int, bool] = {}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # eager only

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        skip = self._plans.get(id(func))
        if skip is None:
            skip = self._plans[id(func)] = torch.Tag.inplace in func.tags and torch.Tag.inplace_view not in func.tags
        if skip and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def resolve_model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """A model built on the meta device (no weights allocated) and its default input size.

    `name` is a cnnlab name, or `torchvision:NAME` / `timm:NAME` for those libraries' own models.
    """
    from cnnlab.errors import UnknownNameError

    prefix, _, rest = name.partition(":")
    if rest and prefix == "torchvision":
        torchvision = _import_optional("torchvision", name)
        if rest not in torchvision.models.list_models():
            raise UnknownNameError("torchvision model", rest, torchvision.models.list_models())
        with torch.device("meta"), _SkipInit(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's init-weights FutureWarnings
            model = torchvision.models.get_model(rest, weights=None)
        return model, (3, 299, 299) if rest == "inception_v3" else (3, 224, 224)
    if rest and prefix == "timm":
        timm = _import_optional("timm", name)
        # timm.create_model would raise a bare RuntimeError('Unknown model'); hub names (hf-hub:...) are its own.
        if ":" not in rest and not timm.is_model(rest):
            raise UnknownNameError("timm model", rest, timm.list_models())
        try:
            with torch.device("meta"), _SkipInit():
                model = timm.create_model(rest, pretrained=False)
        except RuntimeError as e:  # e.g. a hub name without a network
            raise CnnlabError(f"{name}: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from None
        return model, tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    from cnnlab.registry import create_model, get_entry

    entry = get_entry(name)
    with torch.device("meta"), _SkipInit():
        model = create_model(name)
    return model, tuple(entry.family.input_size(name, entry.spec))


def _import_optional(module: str, name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CnnlabError(f"{name} needs {module}, which is not installed (pip install {module})") from None


def _meta_like(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return torch.empty_like(obj, device="meta")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_meta_like(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _meta_like(v) for k, v in obj.items()}
    return obj


def _check_size(input_size: Any) -> tuple[int, ...]:
    if isinstance(input_size, int):
        input_size = (3, input_size, input_size)
    try:
        size = tuple(int(s) for s in input_size)
    except (TypeError, ValueError):
        raise CnnlabError(f"input_size must be a tuple of positive integers, got {input_size!r}") from None
    if not size or any(s <= 0 for s in size):
        raise CnnlabError(f"input_size must be a tuple of positive integers, got {input_size!r}")
    return size


def _runs(twin: nn.Module, size: tuple[int, ...], dtype: torch.dtype) -> bool:
    x = torch.empty(size, device="meta", dtype=dtype)
    try:
        with torch.no_grad(), torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            twin(x)
    except Exception:
        return False
    return True


def smallest_working_size(twin: nn.Module, size: tuple[int, ...], dtype: torch.dtype) -> int | None:
    """The smallest square spatial size at which the model's forward runs (tried on meta), or None.

    Returns `max(H, W)` itself when that size runs (the failure was not about the size).
    """
    *lead, h, w = size
    start = max(h, w, 1)

    def ok(s: int) -> bool:
        return _runs(twin, (*lead, s, s), dtype)

    if ok(start):
        return start
    lo, hi = start, start * 2  # lo fails
    while hi <= _LARGEST_SEARCHED and not ok(hi):
        lo, hi = hi, hi * 2
    if hi <= _LARGEST_SEARCHED:
        while hi - lo > 1:  # conv nets only get easier with size: bisect (lo fails, hi works)
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return hi
    # Nets that need one exact size (a Linear after the convs): look nearby, below first.
    for s in (*range(start - 1, max(0, start - 256), -1), *range(start + 1, start + 256)):
        if ok(s):
            while s < start and s > 1 and ok(s - 1):  # below: the bottom of the working run (LeNet-5: 32-35)
                s -= 1
            return s
    return None


def analyze(
    model_or_name: nn.Module | str,
    input_size: Sequence[int] | int | None = None,
    batch_size: int = 1,
    strict: bool = False,
    depth: int | None = None,
    *,
    inputs: Any = None,
    input_kwargs: dict[str, Any] | None = None,
    train: bool = False,
    dtype: torch.dtype = torch.float32,
    optimizer: str = "sgd_momentum",
    fast: bool = True,
) -> Report:
    """Count a model's per-layer shapes, parameters, MACs, FLOPs, memory and receptive field.

    `model_or_name` is a registered cnnlab name (built on the meta device: no weights are allocated), a
    `torchvision:NAME` or `timm:NAME`, or any nn.Module, which is analysed through a meta twin and left exactly
    as it was (device, mode, state_dict, hooks). The forward runs once on meta tensors of shape
    `(batch_size, *input_size)` (default: the zoo's input size, else 3x224x224), or on meta copies of `inputs`
    (a tensor, a tuple of positional arguments, or any other object passed as the one argument, e.g. a dict)
    plus `input_kwargs`. The twin runs in eval mode unless `train=True` (then dropout and auxiliary heads run).

    Ops without a cost formula are listed in `Report.unsupported` (and warned about); `strict=True` raises
    instead. `depth` sets the default depth of the rendered tables. `optimizer` ("sgd", "sgd_momentum", "adam",
    "adamw") sets the optimizer state in `training_bytes`. `fast=False` runs every meta kernel instead of the
    shape formulas of shapes.py (the slow oracle; same report).
    """
    if optimizer not in OPTIMIZER_COPIES:
        from cnnlab.errors import UnknownNameError

        raise UnknownNameError("optimizer", optimizer, OPTIMIZER_COPIES)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CnnlabError(f"batch_size must be a positive integer, got {batch_size!r}")
    # The analysis allocates many small short-lived objects; the cyclic collector's passes over a big model's
    # module tree cost 10-20% and free nothing (refcounting frees the meta tensors). Paused, then restored.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyze(
            model_or_name, input_size, batch_size, strict, depth, inputs, input_kwargs, train, dtype, optimizer, fast
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def _analyze(
    model_or_name, input_size, batch_size, strict, depth, inputs, input_kwargs, train, dtype, optimizer, fast
) -> Report:
    if isinstance(model_or_name, str):
        twin, default_size = resolve_model(model_or_name)
        twin.train(train)
        label = model_or_name
    elif isinstance(model_or_name, nn.Module):
        twin, default_size = meta_twin(model_or_name, training=train), (3, 224, 224)
        label = getattr(model_or_name, "model_name", "") or type(model_or_name).__name__
    else:
        raise CnnlabError(f"analyze needs a model name or an nn.Module, got {type(model_or_name).__name__}")

    if inputs is None:
        size = _check_size(default_size if input_size is None else input_size)
        args: tuple = (torch.empty((batch_size, *size), device="meta", dtype=dtype),)
    else:
        args = _meta_like(inputs) if isinstance(inputs, tuple) else (_meta_like(inputs),)
    kwargs = _meta_like(input_kwargs or {})
    example = next(_tensors((args, kwargs)), None)
    input_shape = tuple(example.shape) if example is not None else ()

    device_context = False
    try:
        session = _run(twin, args, kwargs, fast, device_context=False, saved=False)
    except Exception:
        # A forward that makes tensors without a device (torch.zeros(n)) mixes CPU and meta: run again with
        # meta as the default device. Not the first choice: that mode costs a Python call per torch function.
        session = None
    if session is None:
        device_context = True
        try:
            session = _run(twin, args, kwargs, fast, device_context=True, saved=False)
        except _Failed as f:
            shape = input_shape if inputs is None else None
            channels = default_size[0] if isinstance(model_or_name, str) and len(default_size) == 3 else None
            raise _failure(label, twin, f.session, f.error, shape, dtype, channels) from f.error
    del example

    # What autograd saves for backward needs its graph recorded: a second forward (the first one is an inference
    # forward, as the memory figures say), about as long as the first, so run only when first asked for
    # (`Report.saved_activation_bytes`, `training_bytes`). `fast=False` runs it at once, the slow oracle.
    def measure_saved() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the model's own warnings were shown by the first forward
            try:
                again = _run(twin, args, kwargs, fast, device_context, saved=True)
            except _Failed as f:
                raise CnnlabError(f"{label}: the forward fails with autograd recording: {f.error}") from f.error
        return sum(again.saved.values())

    saved: int | Callable[[], int] = measure_saved if fast else measure_saved()
    return _report(label, twin, session, input_shape, batch_size, dtype, train, optimizer, strict, depth, saved)


class _Failed(Exception):
    def __init__(self, session: Session, error: Exception):
        super().__init__(str(error))
        self.session, self.error = session, error


def _run(twin: nn.Module, args: tuple, kwargs: dict, fast: bool, device_context: bool, saved: bool) -> Session:
    """One counted forward of the twin. `saved=True` also records autograd's graph to measure what it saves
    for backward (slower: only when asked, see `Report.saved_activation_bytes`)."""
    # The fast measuring forward skips what it does not need (module calls, costs, fields); the slow one is the
    # whole analysis with autograd on, the oracle it is compared with.
    session = Session(twin, fast, saved_only=saved and fast)
    for t in {id(t): t for t in _tensors((args, kwargs))}.values():
        session.register_input(t)
    if not session.saved_only:
        session.attach(wrappers=fast, shortcuts=fast and not saved)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad() if saved else torch.no_grad())
            if device_context:
                stack.enter_context(torch.device("meta"))
            if saved:
                stack.enter_context(torch.autograd.graph.saved_tensors_hooks(session.pack, session.unpack))
            stack.enter_context(CountingMode(session))
            out = twin(*args, **kwargs)
            del out
    except Exception as e:
        raise _Failed(session, e) from e
    finally:
        session.detach()
        session.stop_tracking()
    return session


def _failure(
    label: str,
    twin: nn.Module,
    session: Session,
    err: Exception,
    input_shape: tuple[int, ...] | None,
    dtype: torch.dtype,
    channels: int | None = None,
) -> CnnlabError:
    """The one-line error of a failed forward; `channels` is the model's own input channel count, if known."""
    where = None
    if session.stack:  # the innermost module being called when the error was raised
        rows = _rows(session)
        where = rows[next(i for i, c in enumerate(session.calls) if c is session.stack[-1])]
    layer = f"layer '{where.name or label}' ({where.kind})" if where else "the model's forward"
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
    msg = f"{label} fails on input {'x'.join(map(str, input_shape or ()))} at {layer}: {reason}"
    if input_shape is not None and len(input_shape) == 4 and channels is not None and input_shape[1] != channels:
        # No size can fix a wrong channel count: say that, rather than search sizes in vain.
        msg += f"; {label} takes {channels}-channel inputs, e.g. {channels}x{input_shape[2]}x{input_shape[3]}"
    elif input_shape is not None and len(input_shape) >= 3:
        best = smallest_working_size(twin, input_shape, dtype)
        c = "x".join(map(str, input_shape[1:-2]))
        if best == max(input_shape[-2:]):
            msg += "; the model runs at this size outside the analysis: an analyzer limitation, please report it"
        elif best is not None:
            msg += f"; the smallest square input that works is {c}x{best}x{best}"
        else:
            msg += f"; no square input up to {_LARGEST_SEARCHED}x{_LARGEST_SEARCHED} works"
    return CnnlabError(msg)


def _report(
    label: str,
    twin: nn.Module,
    session: Session,
    input_shape: tuple[int, ...],
    batch_size: int,
    dtype: torch.dtype,
    train: bool,
    optimizer: str,
    strict: bool,
    depth: int | None,
    saved: int | Callable[[], int],
) -> Report:
    if session.unsupported:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(session.unsupported.items()))
        if strict:
            raise CnnlabError(f"{label}: ops without a cost formula: {ops}")
        warnings.warn(f"{label}: ops without a cost formula, not counted: {ops}", stacklevel=3)
    rows = _rows(session)
    total_macs = sum(r.self_macs for r in rows) + session.orphan_macs
    flops = sum(r.self_flops for r in rows) + session.orphan_flops

    params = session.params
    total_params = sum(p.numel() for p in params)
    trainable = [p for p in params if p.requires_grad]
    trainable_params = sum(p.numel() for p in trainable)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    buffer_bytes = sum(b.numel() * b.element_size() for b in session.buffers)
    grad_bytes = sum(p.numel() * p.element_size() for p in trainable)
    optimizer_state_bytes = OPTIMIZER_COPIES[optimizer] * grad_bytes
    warns = []
    if session.misaligned:
        names = {id(c): r.name or label for c, r in zip(session.calls, rows)}
        where = ", ".join(f"'{names[k]}'" for k in list(session.misaligned)[:5])
        warns.append(
            f"branches merged with misaligned receptive-field centres or strides at {where}"
            + (" and more" if len(session.misaligned) > 5 else "")
        )
        warnings.warn(f"{label}: {warns[-1]}", stacklevel=3)
    rf = session.last_field
    return Report(
        model=label,
        input_shape=input_shape,
        batch_size=batch_size,
        dtype=str(dtype).replace("torch.", ""),
        mode="train" if train else "eval",
        rows=rows,
        total_params=total_params,
        trainable_params=trainable_params,
        total_macs=total_macs,
        flops=flops,
        total_activation_bytes=session.written_bytes,
        peak_activation_bytes=session.peak_bytes,
        param_bytes=param_bytes,
        buffer_bytes=buffer_bytes,
        grad_bytes=grad_bytes,
        optimizer=optimizer,
        optimizer_state_bytes=optimizer_state_bytes,
        saved_bytes=saved,
        receptive_field=rf.max_size if rf is not None else None,
        jump=rf.max_jump if rf is not None else None,
        global_context=session.global_context,
        unsupported=dict(session.unsupported),
        warnings=warns,
        depth=depth,
    )


def _rows(session: Session) -> list[Row]:
    """Rows from the recorded calls: module paths, first-use parameters, inclusive figures."""
    canonical = {id(m): n for n, m in session.named_modules}
    child_names: dict[int, dict[int, str]] = {}
    seen: set[int] = set()
    counts: dict[int, int] = {}
    rows: list[Row] = []
    index: dict[int, Row] = {}
    for call in session.calls:  # call order: a parent before its children
        m = call.module
        counts[id(m)] = counts.get(id(m), 0) + 1
        parent = call.parent
        if parent is None:
            name = ""
        else:
            names = child_names.get(id(parent.module))
            if names is None:
                names = {id(c): n for n, c in parent.module._modules.items() if c is not None}
                child_names[id(parent.module)] = names
            prow = index[id(parent)]
            if (own := names.get(id(m))) is not None:
                name = f"{prow.name}.{own}" if prow.name else own
            else:  # called by a module that does not own it
                name = canonical.get(id(m), type(m).__name__)
        new = 0
        for p in m._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                new += p.numel()
        w = call.window
        rf = call.field
        row = Row(
            name=name,
            kind=type(m).__name__,
            depth=call.depth,
            call=counts[id(m)],
            leaf=not call.children,
            input_shape=call.input_shape,
            output_shape=call.output_shape,
            activation_bytes=call.activation_bytes,
            receptive_field=rf.max_size if rf is not None else None,
            jump=rf.max_jump if rf is not None else None,
            kernel=w.kernel if w else None,
            stride=w.stride if w else None,
            padding=w.padding if w else None,
            dilation=w.dilation if w else None,
            groups=w.groups if w else None,
            self_params=new,
            self_macs=call.macs,
            self_flops=call.flops,
        )
        index[id(call)] = row
        rows.append(row)
    # Inclusive figures: children come after their parent in call order, so walk backwards.
    for call, row in zip(reversed(session.calls), reversed(rows)):
        kids = [index[id(c)] for c in call.children]
        row.macs = row.self_macs + sum(k.macs for k in kids)
        row.flops = row.self_flops + sum(k.flops for k in kids)
        row.params = row.self_params + sum(k.params for k in kids)
        row.calls = counts[id(call.module)]
    return rows


@cache
def total_macs(name: str, input_size: tuple[int, ...] | None = None) -> int:
    """MACs of a registered model at its default input size (for `cnnlab models`)."""
    return analyze(name, input_size=input_size).total_macs
