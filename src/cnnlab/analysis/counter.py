"""Op-level counting: a TorchDispatchMode sees every aten op as it runs on meta tensors, and temporary hooks on a
meta twin of the model say which module call is running. Nothing here touches the user's model or global torch
state: hooks live on the twin, the mode and the saved-tensor hooks are context managers."""

from __future__ import annotations

import copy
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from cnnlab.analysis import formulas, receptive, shapes
from cnnlab.analysis.formulas import GLOBAL, MATMUL_OPS, Window
from cnnlab.analysis.receptive import RField
from cnnlab.analysis.report import Row

_RF_ATTR = "_cnnlab_rf"  # set on the twin's meta activations only; they die with the analysis
_WINDOW_OPS = frozenset(formulas._POOL_SPATIAL) | frozenset(formulas._ADAPTIVE) | {
    formulas.aten.convolution,
    formulas.aten._convolution,
}
_REDUCE_OPS = frozenset({formulas.aten.mean, formulas.aten.sum, formulas.aten.amax, formulas.aten.amin})
_RESAMPLE_OPS = frozenset(
    {
        formulas.aten.upsample_nearest1d,
        formulas.aten.upsample_nearest2d,
        formulas.aten.upsample_nearest3d,
        formulas.aten._upsample_nearest_exact2d,
        formulas.aten.upsample_bilinear2d,
        formulas.aten.upsample_bicubic2d,
    }
)


def _meta(t: torch.Tensor, memo: dict[int, Any]) -> torch.Tensor:
    if id(t) not in memo:
        # empty_strided, not empty_like: the latter is a slow Python decomposition on meta
        meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return memo[id(t)]


def _clone(m: nn.Module, memo: dict[int, Any]) -> nn.Module:
    if id(m) in memo:  # a module shared by several parents stays one module
        return memo[id(m)]
    twin = object.__new__(type(m))
    memo[id(m)] = twin
    state = {}
    for k, v in m.__dict__.items():
        if isinstance(v, torch.Tensor):
            v = _meta(v, memo)
        elif type(v) in (dict, OrderedDict, list, set):
            v = v.copy()  # the twin's hooks and containers are its own; their contents are shared
        state[k] = v
    state["_parameters"] = {k: None if p is None else _meta(p, memo) for k, p in m._parameters.items()}
    state["_buffers"] = {k: None if b is None else _meta(b, memo) for k, b in m._buffers.items()}
    state["_modules"] = {k: None if c is None else _clone(c, memo) for k, c in m._modules.items()}
    object.__setattr__(twin, "__dict__", state)
    return twin


def meta_twin(model: nn.Module, deep: bool = False) -> nn.Module:
    """A copy of `model` whose parameters, buffers and tensor attributes are meta tensors (no weight copied).

    The default copies the module tree one level deep per module: each module's attribute dict, hook dicts
    and containers are the twin's own, the other attribute values are shared with the original (a forward
    that mutates a shared Python list in place would be seen by both). `deep=True` uses `copy.deepcopy` with
    a memo pre-filled with the meta stand-ins instead: fully independent, and 5-50x slower (DenseNet-121:
    about a second). Either way shared modules and tied parameters stay shared.
    """
    memo: dict[int, Any] = {}
    if not deep:
        return _clone(model, memo)
    for m in model.modules():
        for t in (*m._parameters.values(), *m._buffers.values(), *vars(m).values()):
            if isinstance(t, torch.Tensor):
                _meta(t, memo)
    return copy.deepcopy(model, memo)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Tensors in an op's args or a module's output (lists, tuples, dicts; one level of nesting is enough for
    aten ops, recursion covers module outputs)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


@dataclass
class Call:
    module: nn.Module
    row: Row
    parent: Call | None
    children: list[Call] = field(default_factory=list)


class Session:
    """State of one analysis: the call tree, costs, receptive fields and activation lifetimes."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.stack: list[Call] = []
        self.calls: list[Call] = []
        self.unsupported: Counter[str] = Counter()
        self.orphan_macs = self.orphan_flops = 0
        self.call_counts: Counter[int] = Counter()
        self.seen_params: set[int] = set()
        self.canonical = {id(m): n for n, m in model.named_modules()}
        self._child_names: dict[int, dict[int, str]] = {}
        self.last_field: RField | None = None
        self.global_context = False
        self.misaligned: Counter[str] = Counter()
        # memory: storage key -> [serial, nbytes, live tensor count]
        self.foreign = {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}
        self.storages: dict[int, list[int]] = {}
        self._refs: list[weakref.ref] = []
        self._serial = 0
        self.live_bytes = self.peak_bytes = self.written_bytes = 0
        self.saved: dict[Any, int] = {}
        self._handles: list[Any] = []

    # ---- module hooks (on the twin) ----

    def attach(self) -> None:
        for m in self.model.modules():
            self._handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
            self._handles.append(m.register_forward_hook(self._post, with_kwargs=True))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _path(self, module: nn.Module, parent: Call | None) -> str:
        if parent is None:
            return ""
        pid = id(parent.module)
        names = self._child_names.get(pid)
        if names is None:
            names = {id(c): n for n, c in parent.module._modules.items() if c is not None}
            self._child_names[pid] = names
        if (name := names.get(id(module))) is not None:
            return f"{parent.row.name}.{name}" if parent.row.name else name
        return self.canonical.get(id(module), type(module).__name__)  # called by a module that does not own it

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        parent = self.stack[-1] if self.stack else None
        self.call_counts[id(module)] += 1
        first = next(_tensors((args, kwargs)), None)
        new = 0
        for p in module._parameters.values():
            if p is not None and id(p) not in self.seen_params:
                self.seen_params.add(id(p))
                new += p.numel()
        row = Row(
            name=self._path(module, parent),
            kind=type(module).__name__,
            depth=len(self.stack),
            call=self.call_counts[id(module)],
            input_shape=tuple(first.shape) if first is not None else None,
            self_params=new,
        )
        call = Call(module, row, parent)
        if parent is not None:
            parent.children.append(call)
            parent.row.leaf = False
        self.calls.append(call)
        self.stack.append(call)

    def _post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        while self.stack and self.stack[-1].module is not module:  # a sub-call whose exception was caught
            self.stack.pop()
        if not self.stack:
            return
        row = self.stack.pop().row
        outs = list(_tensors(output))
        if outs:
            row.output_shape = tuple(outs[0].shape)
            uniq = {id(t): t for t in outs}.values()
            row.activation_bytes = sum(t.numel() * t.element_size() for t in uniq)
            rf = getattr(outs[0], _RF_ATTR, None)
            if isinstance(rf, RField) and outs[0].dim() >= 3:
                row.receptive_field, row.jump = rf.max_size, rf.max_jump

    # ---- ops ----

    def on_op(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any) -> None:
        packet = func.overloadpacket
        call = self.stack[-1] if self.stack else None
        cost = formulas.op_cost(func, args, kwargs, out)
        if cost is None:
            self.unsupported[str(packet)] += 1
        elif call is not None:
            call.row.self_macs += cost.macs
            call.row.self_flops += cost.flops
        else:
            self.orphan_macs += cost.macs
            self.orphan_flops += cost.flops

        ins = list(_tensors(args))
        if kwargs:
            ins += list(_tensors(kwargs))
        outs = list(_tensors(out))
        if not outs:
            return
        self._field(packet, func, args, kwargs, out, ins, outs, call)
        for o in outs:
            self._track(o, ins)

    def _field(self, packet, func, args, kwargs, out, ins, outs, call) -> None:
        fields = [getattr(t, _RF_ATTR, None) for t in ins]
        if packet in _WINDOW_OPS:
            w = formulas.window(func, args, kwargs, out)
            base = fields[0] if fields else None
            if w is GLOBAL:
                rf = GLOBAL if base is not None else None
            elif isinstance(w, Window):
                rf = receptive.apply_window(base, w) if isinstance(base, RField) else base
                if call is not None and call.row.kernel is None:
                    row = call.row
                    row.kernel, row.stride, row.padding = w.kernel, w.stride, w.padding
                    row.dilation, row.groups = w.dilation, w.groups
            else:
                rf = base
        elif packet in _REDUCE_OPS and formulas.is_spatial_reduction(func, args, out):
            rf = GLOBAL if any(f is not None for f in fields) else None
        elif packet in MATMUL_OPS and sum(f is not None for f in fields) >= 2:
            rf = GLOBAL  # two activations multiplied together: every position sees every other (attention)
        elif packet in _RESAMPLE_OPS and isinstance(fields[0], RField):
            x, o = args[0], formulas._first(out)
            n = x.dim() - 2
            rf = receptive.rescale(fields[0], tuple(x.shape[-n:]), tuple(o.shape[-n:]))
        else:
            rf, misaligned, saw_global = receptive.merge(fields)
            if misaligned:
                self.misaligned[call.row.name if call is not None else ""] += 1
            if saw_global and isinstance(rf, RField):
                self.global_context = True
        if rf is None:
            return
        for o in outs:
            try:
                setattr(o, _RF_ATTR, rf)
            except (AttributeError, RuntimeError):  # a tensor subclass with __slots__
                pass
        if isinstance(rf, RField) and outs[0].dim() >= 3:
            self.last_field = rf

    # ---- activation memory ----

    def register_input(self, t: torch.Tensor) -> None:
        self._track(t, [])
        setattr(t, _RF_ATTR, receptive.input_field(max(1, min(t.dim() - 2, 3))))

    def _track(self, t: torch.Tensor, ins: list[torch.Tensor]) -> None:
        if any(t is i for i in ins):  # in-place result: the same tensor, already counted
            return
        storage = t.untyped_storage()
        key = storage._cdata
        entry = self.storages.get(key)
        if entry is None:
            if key in self.foreign:  # a view of a weight or buffer
                return
            self._serial += 1
            nbytes = storage.nbytes()
            entry = self.storages[key] = [self._serial, nbytes, 0]
            self.live_bytes += nbytes
            self.written_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        entry[2] += 1
        self._refs.append(weakref.ref(t, self._release_cb(key, entry[0])))

    def _release_cb(self, key: int, serial: int):
        def release(_ref: weakref.ref) -> None:
            entry = self.storages.get(key)
            if entry is None or entry[0] != serial:
                return
            entry[2] -= 1
            if entry[2] == 0:
                self.live_bytes -= entry[1]
                del self.storages[key]

        return release

    def stop_tracking(self) -> None:
        self._refs.clear()  # dropping the weakrefs first: no callback fires after the analysis

    # ---- saved for backward ----

    def pack(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.foreign:
            return None  # weights are counted as parameters
        entry = self.storages.get(key)
        ident = ("t", entry[0]) if entry is not None else ("x", key)
        self.saved.setdefault(ident, storage.nbytes())
        return None  # keep nothing: the forward's lifetimes stay those of inference

    @staticmethod
    def unpack(_: Any) -> torch.Tensor:  # pragma: no cover - the analysis never runs backward
        raise RuntimeError("cnnlab's analysis graph has no saved tensors")


class CountingMode(TorchDispatchMode):
    """Runs each aten op, then hands it to the session to be costed and tracked."""

    def __init__(self, session: Session, fast: bool = True):
        super().__init__()
        self.session = session
        self.fast = fast

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = shapes.run(func, args, kwargs, self.fast)
        self.session.on_op(func, args, kwargs, out)
        return out
