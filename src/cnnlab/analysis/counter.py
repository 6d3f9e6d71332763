"""Op-level counting: a TorchDispatchMode sees every aten op as it runs on meta tensors, and temporary forward
wrappers (or hooks, in the slow oracle) on a meta twin of the model say which module call is running. Nothing here
touches the user's model or global torch state: wrappers and hooks live on the twin, the mode and the saved-tensor
hooks are context managers."""

from __future__ import annotations

import copy
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from cnnlab.analysis import formulas, receptive, shapes
from cnnlab.analysis.formulas import GLOBAL, MATMUL_OPS, Window
from cnnlab.analysis.receptive import RField

_ABSENT = object()
_RF_ATTR = "_cnnlab_rf"  # set on the twin's meta activations only; they die with the analysis
_WINDOW_OPS = (
    frozenset(formulas._POOL_SPATIAL)
    | frozenset(formulas._ADAPTIVE)
    | {
        formulas.aten.convolution,
        formulas.aten._convolution,
    }
)
_REDUCE_OPS = frozenset({formulas.aten.mean, formulas.aten.sum, formulas.aten.amax, formulas.aten.amin})
# Ops that only re-index the same elements: the field moves with the axes that hold it (receptive.reshaped).
_RESHAPE_OPS = frozenset(
    {
        formulas.aten.view,
        formulas.aten._unsafe_view,
        formulas.aten.reshape,
        formulas.aten._reshape_alias,
        formulas.aten.unsqueeze,
        formulas.aten.squeeze,
        formulas.aten.flatten,
        formulas.aten.unflatten,
    }
)
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
        # type() first: isinstance(t, nn.Parameter) goes through a Python metaclass check
        is_param = type(t) is nn.Parameter or (type(t) is not torch.Tensor and isinstance(t, nn.Parameter))
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if is_param else meta
    return memo[id(t)]


_OWN_COPY = frozenset({dict, OrderedDict, list, set})
_REBUILT = frozenset({"_parameters", "_buffers", "_modules"})


def _clone(m: nn.Module, memo: dict[int, Any], training: bool | None) -> nn.Module:
    if id(m) in memo:  # a module shared by several parents stays one module
        return memo[id(m)]
    twin = object.__new__(type(m))
    memo[id(m)] = twin
    state = m.__dict__.copy()
    for k, v in state.items():
        if k in _REBUILT:
            continue
        if type(v) in _OWN_COPY:
            state[k] = v.copy()  # the twin's hooks and containers are its own; their contents are shared
        elif isinstance(v, torch.Tensor):
            state[k] = _meta(v, memo)
    state["_parameters"] = {k: None if p is None else _meta(p, memo) for k, p in m._parameters.items()}
    state["_buffers"] = {k: None if b is None else _meta(b, memo) for k, b in m._buffers.items()}
    state["_modules"] = {k: None if c is None else _clone(c, memo, training) for k, c in m._modules.items()}
    if training is not None:  # the twin's mode, set here rather than by a second walk (Module.train)
        state["training"] = training
    object.__setattr__(twin, "__dict__", state)
    return twin


def meta_twin(model: nn.Module, deep: bool = False, training: bool | None = None) -> nn.Module:
    """A copy of `model` whose parameters, buffers and tensor attributes are meta tensors (no weight copied).

    The default copies the module tree one level deep per module: each module's attribute dict, hook dicts
    and containers are the twin's own, the other attribute values are shared with the original (a forward
    that mutates a shared Python list in place would be seen by both). `deep=True` uses `copy.deepcopy` with
    a memo pre-filled with the meta stand-ins instead: fully independent, and 5-50x slower (DenseNet-121:
    about a second). Either way shared modules and tied parameters stay shared. `training` sets the twin's
    mode (None: as the original's).
    """
    memo: dict[int, Any] = {}
    if not deep:
        return _clone(model, memo, training)
    for m in model.modules():
        for t in (*m._parameters.values(), *m._buffers.values(), *vars(m).values()):
            if isinstance(t, torch.Tensor):
                _meta(t, memo)
    twin = copy.deepcopy(model, memo)
    return twin if training is None else twin.train(training)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Tensors in a module's inputs or outputs (nested lists, tuples, dicts)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _flat(args: tuple) -> list[torch.Tensor]:
    """Tensors among an aten op's arguments: aten schemas nest at most one list deep (cat, stack)."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(t for t in a if isinstance(t, torch.Tensor))
    return out


class Plan:
    """What to do with one aten overload, decided once per overload (hashing ops is slow in Python)."""

    __slots__ = (
        "func", "name", "cost", "shape", "window", "reduce", "matmul", "resample", "slice", "pad", "reshape",
        "special", "tensor_args", "list_args",
    )  # fmt: skip

    def __init__(self, func: torch._ops.OpOverload):
        packet = func.overloadpacket
        self.func = func  # keeps the id() key alive
        self.name = str(packet)
        self.cost = formulas.cost_function(func)
        self.shape = shapes.SHAPE_FORMULAS.get(func)
        self.window = packet in _WINDOW_OPS
        self.reduce = packet in _REDUCE_OPS
        self.matmul = packet in MATMUL_OPS
        self.resample = packet in _RESAMPLE_OPS
        self.slice = packet is formulas.aten.slice
        self.pad = packet is formulas.aten.constant_pad_nd
        self.reshape = packet in _RESHAPE_OPS
        # Most ops (pointwise, batch norm, copies) pass their inputs' fields on: one flag to test for the others.
        self.special = (
            self.window or self.reduce or self.matmul or self.resample or self.slice or self.pad or self.reshape
        )
        # Which positional arguments can hold tensors, from the schema: scanning all of them with isinstance
        # is a few microseconds per op. None: an unusual schema, scanned in full (_flat).
        self.tensor_args: tuple[int, ...] | None = ()
        self.list_args: tuple[int, ...] = ()
        try:
            kinds = [str(a.type) for a in func._schema.arguments]
        except Exception:  # noqa: BLE001 - any op without a readable schema takes the general path
            self.tensor_args = None
        else:
            self.tensor_args = tuple(i for i, k in enumerate(kinds) if k in ("Tensor", "Optional[Tensor]"))
            self.list_args = tuple(i for i, k in enumerate(kinds) if "Tensor" in k and k.startswith("List["))
            if any("Tensor" in k for i, k in enumerate(kinds) if i not in self.tensor_args + self.list_args):
                self.tensor_args = None


_PLANS: dict[int, Plan] = {}


def plan_for(func: torch._ops.OpOverload) -> Plan:
    plan = _PLANS.get(id(func))
    if plan is None or plan.func is not func:
        plan = _PLANS[id(func)] = Plan(func)
    return plan


def _crop_or_pad(plan: Plan, args: tuple, rf: RField) -> RField:
    """aten.slice(x, dim, start, end, step) and constant_pad_nd(x, pad) on the trailing (spatial) axes.

    Axes in front of the field's (`rf.dims`) are not spatial: LRN pads its channel axis this way."""
    x = args[0]
    n = rf.dims
    first = x.dim() - n  # index of the first tracked axis
    if plan.slice:
        dim = (args[1] if len(args) > 1 else 0) % x.dim()
        if dim < first:
            return rf
        begin = args[2] if len(args) > 2 and args[2] is not None else 0
        begin = max(0, begin + x.shape[dim]) if begin < 0 else min(begin, x.shape[dim])
        step = args[4] if len(args) > 4 else 1
        if begin == 0 and step == 1:
            return rf
        return receptive.shift(_entries(rf), len(rf.size) - x.dim() + dim, begin, step)
    pad = list(args[1])
    for i in range(min(n, len(pad) // 2)):  # (left, right) pairs from the last axis backwards
        if pad[2 * i]:
            rf = receptive.shift(_entries(rf), len(rf.size) - 1 - i, -pad[2 * i])
    return rf


def _entries(rf: RField) -> RField:
    """The field with one entry per trailing axis. After a reshape that merged the tracked axes this is an
    approximation (a crop or pad of a merged axis has no exact field): the trailing entries stand for them."""
    return rf if rf.aligned else RField(rf.size, rf.jump, rf.start)


# ---- module shortcuts ----
# A stock Conv2d, eval-mode BatchNorm2d or ReLU sends exactly one costed aten op down to the dispatch mode, after a
# few Python and C++ layers (the module's forward, F.conv2d / F.batch_norm, composite ops) that cost more than
# the op's own bookkeeping. With autograd off (the counting forward), the wrapper hands that op to the session
# directly: the same op, arguments and bookkeeping, so the same report (the fast=False oracle runs the modules
# and is compared in tests). Anything unusual (subclasses, other padding modes, string padding, training mode,
# an input the shape formula does not take) runs the module's real forward.


def _conv2d_shortcut(m: nn.Conv2d, args: tuple, kwargs: dict, run_op: Any) -> Any:
    x = args[0]
    if m.padding_mode != "zeros" or isinstance(m.padding, str) or type(x) is not torch.Tensor or x.dim() != 4:
        return None
    op_args = (x, m.weight, m.bias, list(m.stride), list(m.padding), list(m.dilation), False, [0, 0], m.groups)
    if not (x.is_meta and x.is_floating_point()):
        return None
    return run_op(_CONV, op_args, {}, strict_shape=True)


def _batch_norm2d_shortcut(m: nn.BatchNorm2d, args: tuple, kwargs: dict, run_op: Any) -> Any:
    x = args[0]
    if m.training or m.running_mean is None or m.running_var is None or type(x) is not torch.Tensor:
        return None
    if x.dim() != 4 or not (x.is_meta and x.is_floating_point()):
        return None
    momentum = 0.0 if m.momentum is None else m.momentum
    op_args = (x, m.weight, m.bias, m.running_mean, m.running_var, False, momentum, m.eps)
    # The composite batch_norm also makes an empty (0-byte) reserve tensor first: it changes no figure.
    out = run_op(_BATCH_NORM, op_args, {}, strict_shape=True)
    return None if out is None else out[0]


def _relu_shortcut(m: nn.ReLU, args: tuple, kwargs: dict, run_op: Any) -> Any:
    x = args[0]
    if type(x) is not torch.Tensor or not (x.is_meta and x.is_floating_point()):
        return None
    return run_op(_RELU_ if m.inplace else _RELU, (x,), {}, strict_shape=True)


_NO_DISPATCH = torch._C._DisableTorchDispatch
_RELU, _RELU_ = formulas.aten.relu.default, formulas.aten.relu_.default
_CONV = formulas.aten.convolution.default
_BATCH_NORM = formulas.aten.native_batch_norm.default
_SHORTCUTS: dict[type, Any] = {
    nn.Conv2d: _conv2d_shortcut,
    nn.BatchNorm2d: _batch_norm2d_shortcut,
    nn.ReLU: _relu_shortcut,
}


class _Ref(weakref.ref):
    """A weak reference to an activation that says which storage it keeps alive (no closure per tensor)."""

    __slots__ = ("key", "serial")


class Call:
    """One module call, recorded cheaply during the forward; rows are built from it afterwards."""

    __slots__ = (
        "module", "parent", "depth", "children", "input_shape", "output_shape", "activation_bytes",
        "field", "macs", "flops", "window",
    )  # fmt: skip

    def __init__(self, module: nn.Module, parent: Call | None, depth: int, input_shape: tuple | None):
        self.module, self.parent, self.depth, self.input_shape = module, parent, depth, input_shape
        self.children: list[Call] = []
        self.output_shape: tuple | None = None
        self.activation_bytes = 0
        self.field: RField | None = None
        self.macs = self.flops = 0
        self.window: Window | None = None


class Session:
    """State of one analysis: the call tree, costs, receptive fields and activation lifetimes."""

    def __init__(self, model: nn.Module, fast: bool = True, saved_only: bool = False):
        self.model = model
        self.fast = fast
        self.saved_only = saved_only
        self.stack: list[Call] = []
        self.calls: list[Call] = []
        self.unsupported: Counter[str] = Counter()
        self.orphan_macs = self.orphan_flops = 0
        self.last_field: RField | None = None
        self.global_context = False
        self.misaligned: Counter[int] = Counter()  # id(Call) -> count
        self.named_modules = list(model.named_modules())
        self.modules = [m for _, m in self.named_modules]
        self.params: list[nn.Parameter] = []
        self.buffers: list[torch.Tensor] = []
        seen: set[int] = set()
        for m in self.modules:  # one walk instead of parameters() + buffers(); same order, each once
            for p in m._parameters.values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    self.params.append(p)
            for b in m._buffers.values():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    self.buffers.append(b)
        # memory: storage key -> [serial, nbytes, live tensor count]
        self.foreign = {t.untyped_storage()._cdata for t in (*self.params, *self.buffers)}
        self.storages: dict[int, list[int]] = {}
        self._refs: list[_Ref] = []
        self._serial = 0
        self.live_bytes = self.peak_bytes = self.written_bytes = 0
        self.saved: dict[Any, int] = {}
        self._attached: list[tuple[nn.Module, Any]] = []
        self._wrapped = self._shortcuts = False

    # ---- module calls (on the twin, which is thrown away; detach() tidies up all the same) ----

    _KEY = "cnnlab.analysis"

    def attach(self, wrappers: bool = True, shortcuts: bool = False) -> None:
        """Record every module call of the twin.

        `wrappers=True` shadows each twin module's `forward` with an instance attribute that records the call:
        without hooks, `Module.__call__` takes its fast path, which saves about a fifth of an analysis. It also
        sees `module.forward(x)` called directly, which hooks miss. `wrappers=False` uses forward pre/post hooks
        (the slow oracle: the reports are compared in a test). `shortcuts` (only for a forward without autograd,
        which they bypass) lets stock conv and batch-norm modules hand their op to the session directly."""
        self._wrapped = wrappers
        self._shortcuts = shortcuts
        for m in self.modules:
            if wrappers:
                own = m.__dict__.get("forward", _ABSENT)
                m.__dict__["forward"] = self._wrap(m, m.forward)
                self._attached.append((m, own))
            else:
                m._forward_pre_hooks[self._KEY] = self._pre
                m._forward_pre_hooks_with_kwargs[self._KEY] = True
                m._forward_hooks[self._KEY] = self._post
                m._forward_hooks_with_kwargs[self._KEY] = True
                self._attached.append((m, None))

    def _wrap(self, module: nn.Module, forward: Any) -> Any:
        pre, post = self._pre, self._post
        shortcut = _SHORTCUTS.get(type(module)) if self._shortcuts else None
        if shortcut is not None:
            run_op = self.run_op

            def forward_shortcut(*args: Any, **kwargs: Any) -> Any:
                pre(module, args, kwargs)
                out = None
                if len(args) == 1 and not kwargs:
                    # As inside __torch_dispatch__: the tensors the shape formula makes are not ops to count.
                    with _NO_DISPATCH():
                        out = shortcut(module, args, kwargs, run_op)
                if out is None:
                    out = forward(*args, **kwargs)
                post(module, args, kwargs, out)
                return out

            forward_shortcut.__wrapped__ = forward  # inspect.signature(module.forward) still sees the real one
            return forward_shortcut

        def forward_recorded(*args: Any, **kwargs: Any) -> Any:
            pre(module, args, kwargs)
            # No try/finally: when the forward raises, the call stays on the stack, which is how a failure is
            # located (as with hooks, whose post-hook does not run either).
            out = forward(*args, **kwargs)
            post(module, args, kwargs, out)
            return out

        forward_recorded.__wrapped__ = forward  # inspect.signature(module.forward) still sees the real one
        return forward_recorded

    def detach(self) -> None:
        for m, own in self._attached:
            if self._wrapped:
                if own is _ABSENT:
                    m.__dict__.pop("forward", None)
                else:
                    m.__dict__["forward"] = own
            else:
                for d in (m._forward_pre_hooks, m._forward_pre_hooks_with_kwargs, m._forward_hooks,
                          m._forward_hooks_with_kwargs):  # fmt: skip
                    d.pop(self._KEY, None)
        self._attached.clear()

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        stack = self.stack
        parent = stack[-1] if stack else None
        first = args[0] if args and isinstance(args[0], torch.Tensor) else next(_tensors((args, kwargs)), None)
        call = Call(module, parent, len(stack), tuple(first.shape) if first is not None else None)
        if parent is not None:
            parent.children.append(call)
        self.calls.append(call)
        stack.append(call)

    def _post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        stack = self.stack
        while stack and stack[-1].module is not module:  # a sub-call whose exception was caught
            stack.pop()
        if not stack:
            return
        call = stack.pop()
        outs = [output] if isinstance(output, torch.Tensor) else list(_tensors(output))
        if outs:
            first = outs[0]
            call.output_shape = tuple(first.shape)
            if len(outs) == 1:
                call.activation_bytes = first.numel() * first.element_size()
            else:
                uniq = {id(t): t for t in outs}.values()
                call.activation_bytes = sum(t.numel() * t.element_size() for t in uniq)
            rf = getattr(first, _RF_ATTR, None)
            if isinstance(rf, RField) and first.dim() >= 3:
                call.field = rf

    # ---- ops ----

    def run_op(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict, strict_shape: bool = False) -> Any:
        """Run (or shape) one aten op and count it. `strict_shape`: return None, counting nothing, when the shape
        formula does not take the arguments (a module shortcut then runs the real forward)."""
        plan = plan_for(func)
        out = None
        if self.fast and plan.shape is not None and args:
            x = args[0]
            # Integer inputs would need type promotion: leave them to the kernel.
            if isinstance(x, torch.Tensor) and x.is_meta and x.is_floating_point():
                out = plan.shape(args, kwargs)
                if out is shapes.FALLBACK:
                    out = None
        if out is None:
            if strict_shape:
                return None
            out = func(*args, **kwargs)
        self.on_op(plan, args, kwargs, out)
        return out

    def on_op(self, plan: Plan, args: tuple, kwargs: dict, out: Any) -> None:
        # The hot path of an analysis (one call per aten op): written out flat, the common cases first.
        if self.saved_only:  # the forward that measures what autograd saves needs only the tensors' identities
            outs = [out] if isinstance(out, torch.Tensor) else _flat(out) if isinstance(out, (tuple, list)) else []
            for o in outs:
                if not any(o is a for a in args):
                    self._track(o)
            return
        stack = self.stack
        call = stack[-1] if stack else None
        cost = plan.cost
        if cost is None:
            self.unsupported[plan.name] += 1
        elif cost is not formulas._no_cost:  # data movement: zero by definition, nothing to add
            macs, flops = cost(args, kwargs, out)
            if call is not None:
                call.macs += macs
                call.flops += flops
            else:
                self.orphan_macs += macs
                self.orphan_flops += flops
        idx = plan.tensor_args
        if idx is None or plan.list_args:
            ins = _flat(args)
        else:
            n = len(args)
            ins = [a for a in [args[i] for i in idx if i < n] if isinstance(a, torch.Tensor)]
        if kwargs:
            ins += _flat(tuple(kwargs.values()))
        if isinstance(out, torch.Tensor):
            outs = [out]
        elif isinstance(out, (tuple, list)):
            outs = _flat(out)
            if not outs:
                return
        else:
            return
        if plan.special:
            self._field(plan, args, kwargs, out, ins, outs, call)
        elif ins:  # pointwise, norms, copies: the inputs' field passes on
            rf = getattr(ins[0], _RF_ATTR, None)
            if len(ins) > 1:
                fields = [getattr(t, _RF_ATTR, None) for t in ins]
                if len(fields) > 2 or fields[1] is not None:
                    rf, misaligned, saw_global = receptive.merge(fields)
                    if misaligned and call is not None:
                        self.misaligned[id(call)] += 1
                    if saw_global and isinstance(rf, RField):
                        self.global_context = True
            if rf is not None:
                self._set_field(rf, outs)
        for o in outs:
            for i in ins:
                if o is i:  # in-place result: the same tensor, already counted
                    break
            else:
                self._track(o)

    def _field(self, plan: Plan, args, kwargs, out, ins, outs, call) -> None:
        """The receptive field of the ops that change it (windows, reductions, crops, reshapes, ...)."""
        fields = [getattr(t, _RF_ATTR, None) for t in ins]
        if plan.window:
            w = formulas.window(plan.func, args, kwargs, out)
            base = fields[0] if fields else None
            if w is GLOBAL:
                rf = GLOBAL if base is not None else None
            elif isinstance(w, Window):
                rf = receptive.apply_window(base, w) if isinstance(base, RField) else base
                if call is not None and call.window is None:
                    call.window = w
            else:
                rf = base
        elif plan.reduce and formulas.is_spatial_reduction(plan.func, args, out):
            rf = GLOBAL if any(f is not None for f in fields) else None
        elif plan.matmul and sum(f is not None for f in fields) >= 2:
            rf = GLOBAL  # two activations multiplied together: every position sees every other (attention)
        elif (plan.slice or plan.pad) and isinstance(fields[0], RField):
            rf = _crop_or_pad(plan, args, fields[0])
        elif plan.reshape and isinstance(fields[0], RField):
            rf = receptive.reshaped(fields[0], tuple(args[0].shape), tuple(formulas._first(out).shape))
        elif plan.resample and isinstance(fields[0], RField):
            x, o = args[0], formulas._first(out)
            n = x.dim() - 2
            rf = receptive.rescale(fields[0], tuple(x.shape[-n:]), tuple(o.shape[-n:]))
        else:
            if len(fields) == 1 or (len(fields) == 2 and fields[1] is None):
                rf = fields[0] if fields else None
            else:
                rf, misaligned, saw_global = receptive.merge(fields)
                if misaligned and call is not None:
                    self.misaligned[id(call)] += 1
                if saw_global and isinstance(rf, RField):
                    self.global_context = True
        if rf is not None:
            self._set_field(rf, outs)

    def _set_field(self, rf: RField | str, outs: list[torch.Tensor]) -> None:
        for o in outs:
            try:  # noqa: SIM105 - try/except is cheaper than contextlib.suppress on this hot path
                setattr(o, _RF_ATTR, rf)
            except (AttributeError, RuntimeError):  # a tensor subclass with __slots__
                pass
        if type(rf) is RField and outs[0].dim() >= 3:
            self.last_field = rf

    # ---- activation memory ----

    def register_input(self, t: torch.Tensor) -> None:
        self._track(t)
        self.written_bytes -= t.untyped_storage().nbytes()  # live from the start, but not written by the model
        setattr(t, _RF_ATTR, receptive.input_field(max(1, min(t.dim() - 2, 3))))

    def _track(self, t: torch.Tensor) -> None:
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
            if self.live_bytes > self.peak_bytes:
                self.peak_bytes = self.live_bytes
        entry[2] += 1
        ref = _Ref(t, self._release)
        ref.key, ref.serial = key, entry[0]
        self._refs.append(ref)

    def _release(self, ref: _Ref) -> None:
        entry = self.storages.get(ref.key)
        if entry is None or entry[0] != ref.serial:
            return
        entry[2] -= 1
        if entry[2] == 0:
            self.live_bytes -= entry[1]
            del self.storages[ref.key]

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
    """Runs each aten op (or its shape formula), then hands it to the session to be costed and tracked."""

    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # The analysis runs eagerly, never under torch.compile: skip the per-op dynamo-disable wrapper
        # (about a tenth of an analysis's time).
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.session.run_op(func, args, kwargs or {})
