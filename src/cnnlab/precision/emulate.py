"""Training under an emulated number format: the model's convs and linears round their weights and outputs, the
backward pass rounds the gradients, and `Emulator.step` rounds the update, keeps (or not) fp32 master weights
and scales the loss.

Where each format applies (Gupta et al. 2015 Sec. 3; Micikevicius et al. 2017 Sec. 3):
- weights: the weights (and biases) of every nn.Conv2d and nn.Linear, as the forward pass sees them. With
  master weights the parameters stay fp32 and the forward pass uses their rounded copy (the gradient passes
  straight through to the master); without, the parameters themselves are stored rounded after every update.
- activations: the output of every such layer (the pre-activation; ReLU and pooling keep a value representable).
  "binary" instead turns the model's activation modules into sign() (binary.py).
- gradients: the gradient flowing back into each such output, and each weight's gradient, in the scaled
  domain when the loss is scaled; unscaled in fp32 before the update.
- update: the change the optimizer (fp32 arithmetic) makes to a weight, rounded before it is applied.
DEVIATION (marked): norm layers' parameters and the optimizer's momentum stay fp32 (as in Micikevicius et al.'s
mixed precision); Gupta et al. also round the layers' inputs, which here are the previous layer's outputs.

The counters (summed per epoch into metrics.csv): updates_nonzero / updates_lost (weight elements whose fp32
update was nonzero and whose stored value did not change), grads_nonzero / grads_flushed (nonzero gradient
elements rounded to zero), overflows (finite values that became inf), saturations (values clipped to a range's
end), skipped_steps (non-finite gradients: the step is skipped and a dynamic loss scale halved).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.precision.config import Emulation
from cnnlab.precision.quantize import quantize, quantize_counted

COUNTERS = ("updates_nonzero", "updates_lost", "grads_nonzero", "grads_flushed", "overflows", "saturations",
            "skipped_steps")  # fmt: skip
_UPD_NZ, _UPD_LOST, _GRAD_NZ, _GRAD_FLUSH, _OVER, _SAT, _SKIP = range(len(COUNTERS))


class Emulator:
    """The state of one emulated run: formats, the stochastic-rounding generator, the loss scale, the counters."""

    def __init__(self, emulation: Emulation, seed: int = 0) -> None:
        self.e = emulation
        self.seed = seed
        self.scale = emulation.init_scale
        self.good_steps = 0  # finite steps since the scale last changed (dynamic scaling)
        self.generator: torch.Generator | None = None
        self.counts: torch.Tensor | None = None
        self.layers: list[nn.Module] = []

    # -- rounding ---------------------------------------------------------------------------------------------
    def _gen(self, device: torch.device) -> torch.Generator:
        if self.generator is None or self.generator.device != device:
            g = torch.Generator(device=device)
            g.manual_seed(1_000_003 * (self.seed + 1))
            self.generator = g
        return self.generator

    def _counts(self, device: torch.device) -> torch.Tensor:
        if self.counts is None or self.counts.device != device:
            self.counts = torch.zeros(len(COUNTERS), dtype=torch.int64, device=device)
        return self.counts

    def round(self, x: torch.Tensor, part: str, training: bool, count: bool = True) -> torch.Tensor:
        """x rounded to `part`'s format (training: its rounding; evaluation: eval_rounding), counting events."""
        fmt = self.e.formats[part]
        if fmt.name == "fp32":
            return x
        rounding = self.e.roundings[part] if training else self.e.eval_rounding
        gen = self._gen(x.device) if rounding == "stochastic" else None
        if not (training and count):
            return quantize(x, fmt, rounding, gen).to(x.dtype)
        y, c = quantize_counted(x, fmt, rounding, gen)
        counts = self._counts(x.device)
        if part == "gradients":
            counts[_GRAD_NZ] += c[0]
            counts[_GRAD_FLUSH] += c[1]
        counts[_OVER] += c[2]
        counts[_SAT] += c[3]
        return y.to(x.dtype)

    def forward_weight(self, w: torch.Tensor, training: bool) -> torch.Tensor:
        """The weight the forward pass uses: the master's rounded copy (the gradient passes straight through)."""
        fmt = self.e.formats["weights"]
        if fmt.name == "fp32":
            return w
        if fmt.kind == "binary":
            if not training and self.e.roundings["weights"] == "stochastic":
                return w  # BinaryConnect Sec. 2.6: stochastic BinaryConnect is tested with the real-valued weights
        elif not self.e.master:
            return w  # stored rounded already
        return _Straight.apply(w, lambda t: self.round(t, "weights", training, count=False))

    def __deepcopy__(self, memo: dict[int, Any]) -> Emulator:
        """A copy for a copied model (the best checkpoint's evaluation): same formats and scale, its own layers."""
        import copy

        new = Emulator(self.e, self.seed)
        memo[id(self)] = new
        new.scale, new.good_steps = self.scale, self.good_steps
        new.layers = [copy.deepcopy(m, memo) for m in self.layers]
        return new

    def output(self, y: torch.Tensor, training: bool) -> torch.Tensor:
        """A layer's output rounded to the activation format; its gradient rounded on the way back."""
        act = self.e.formats["activations"]
        grad = self.e.formats["gradients"]
        if act.kind == "binary":  # binarized at the activation modules instead (binary.py)
            act = None
        if (act is None or act.name == "fp32") and (grad.name == "fp32" or not training):
            return y
        fwd = (lambda t: self.round(t, "activations", training)) if act is not None and act.name != "fp32" else None
        bwd = (lambda g: self.round(g, "gradients", True)) if grad.name != "fp32" and training else None
        return _Rounded.apply(y, fwd, bwd)

    # -- the step ---------------------------------------------------------------------------------------------
    def emulated_params(self) -> list[nn.Parameter]:
        return [p for m in self.layers for p in (m.weight, m.bias) if p is not None]

    def is_weight(self, p: nn.Parameter) -> bool:
        return any(p is m.weight for m in self.layers)

    def forward_bias(self, b: torch.Tensor | None, training: bool) -> torch.Tensor | None:
        """Biases take the weights' format, except binary: BinaryConnect binarizes the weights only."""
        if b is None or self.e.formats["weights"].kind == "binary":
            return b
        return self.forward_weight(b, training)

    def store_rounded(self) -> None:
        """Without master weights, the parameters hold the format's values from the start."""
        if self.e.master or self.e.formats["weights"].name == "fp32":
            return
        with torch.no_grad():
            for p in self.emulated_params():
                if self.is_weight(p) or self.e.formats["weights"].kind != "binary":
                    p.copy_(self.round(p, "weights", True, count=False))

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, model: nn.Module, grad_clip: float) -> bool:
        """Backward (scaled), round the weight gradients, unscale, clip, update, round the update and the weights.

        Returns False when the step was skipped (non-finite gradients).
        """
        (loss * self.scale).backward() if self.e.loss_scale != "off" else loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        emulated = {id(p) for p in self.emulated_params()}
        device = loss.device
        counts = self._counts(device)
        with torch.no_grad():
            for p in params:
                if id(p) in emulated:
                    p.grad.copy_(self.round(p.grad, "gradients", True))
            finite = bool(torch.stack([torch.isfinite(p.grad).all() for p in params]).all()) if params else True
            if not finite:
                counts[_SKIP] += 1
                if self.e.loss_scale == "dynamic":
                    self.scale /= 2
                    self.good_steps = 0
                optimizer.zero_grad(set_to_none=True)
                return False
            if self.e.loss_scale != "off":
                for p in params:
                    p.grad.div_(self.scale)
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            tracked = [p for p in self.emulated_params() if p.requires_grad]
            before = [p.detach().clone() for p in tracked]
            optimizer.step()
            self._round_updates(tracked, before, counts)
        if self.e.loss_scale == "dynamic":
            self.good_steps += 1
            if self.good_steps >= self.e.growth_interval:
                self.scale *= 2
                self.good_steps = 0
        return True

    def _round_updates(self, tracked: list[nn.Parameter], before: list[torch.Tensor], counts: torch.Tensor) -> None:
        upd = self.e.formats["update"]
        weights = self.e.formats["weights"]
        for p, old in zip(tracked, before):
            delta = p - old  # the update as fp32 made it
            if upd.name != "fp32":
                p.copy_(old + self.round(delta, "update", True))
            if not self.e.master and weights.name != "fp32":
                p.copy_(self.round(p, "weights", True))
            if weights.kind == "binary" and self.is_weight(p):
                if self.e.binary_lr_scale == "glorot":
                    p.copy_(old + delta * glorot_lr_scale(p))
                p.clamp_(-1, 1)  # BinaryConnect: the real-valued weights are clipped to [-1, 1]
            nonzero = delta != 0
            counts[_UPD_NZ] += nonzero.sum()
            counts[_UPD_LOST] += (nonzero & (p == old)).sum()

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def flush(self) -> dict[str, Any]:
        """The epoch's counters (and the loss scale now), reset."""
        c = [0] * len(COUNTERS) if self.counts is None else [int(v) for v in self.counts.tolist()]
        if self.counts is not None:
            self.counts.zero_()
        row: dict[str, Any] = dict(zip(COUNTERS, c))
        row["loss_scale"] = self.scale if self.e.loss_scale != "off" else None
        return row

    def state_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "good_steps": self.good_steps,
            "counts": None if self.counts is None else self.counts.cpu(),
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, st: dict[str, Any], device: torch.device) -> None:
        self.scale, self.good_steps = float(st["scale"]), int(st["good_steps"])
        if st.get("counts") is not None:
            self.counts = st["counts"].to(device)
        if st.get("generator") is not None:
            self._gen(device).set_state(st["generator"])


class _Straight(torch.autograd.Function):
    """fn(x) forward; the gradient passes straight through (the straight-through estimator for the weights)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Any) -> torch.Tensor:
        return fn(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        return g, None


class _Rounded(torch.autograd.Function):
    """fwd(x) forward (or x); the incoming gradient rounded by bwd (or passed) backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fwd: Any, bwd: Any) -> torch.Tensor:
        ctx.bwd = bwd
        return fwd(x) if fwd is not None else x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return (ctx.bwd(g) if ctx.bwd is not None else g), None, None


class EmulatedConv2d(nn.Conv2d):
    """nn.Conv2d whose weight, output and gradients go through its Emulator; same parameters and state_dict."""

    emulator: Emulator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.emulator
        w = e.forward_weight(self.weight, self.training)
        b = e.forward_bias(self.bias, self.training)
        return e.output(self._conv_forward(x, w, b), self.training)


class EmulatedLinear(nn.Linear):
    emulator: Emulator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.emulator
        w = e.forward_weight(self.weight, self.training)
        b = e.forward_bias(self.bias, self.training)
        return e.output(F.linear(x, w, b), self.training)


BINARY_MODES = ("deterministic", "stochastic")
_SWAPS = {nn.Conv2d: EmulatedConv2d, nn.Linear: EmulatedLinear}


def emulate(model: nn.Module, emulation: Emulation, seed: int = 0) -> Emulator:
    """Swap the model's nn.Conv2d and nn.Linear (exact types) for emulated ones in place; returns the Emulator.

    Subclasses with their own forward are left alone (as convlab.use_algorithm does). The model keeps its
    state_dict keys, so checkpoints load either way. Binary activations also swap the activation modules.
    """
    from cnnlab.precision.binary import binarize_activations

    emu = Emulator(emulation, seed)
    for m in model.modules():
        swap = _SWAPS.get(type(m))
        if swap is not None:
            m.__class__ = swap
            m.emulator = emu
            emu.layers.append(m)
        elif isinstance(m, (EmulatedConv2d, EmulatedLinear)):
            raise CnnlabError("this model is already emulated")
    weights = emulation.formats["weights"]
    if weights.kind == "binary" and not emu.layers:
        raise CnnlabError(f"nothing to binarize: {type(model).__name__} has no nn.Conv2d or nn.Linear layers")
    if not emu.layers and emulation.active:
        raise CnnlabError(f"nothing to emulate: {type(model).__name__} has no nn.Conv2d or nn.Linear layers")
    if emulation.formats["activations"].kind == "binary":
        binarize_activations(model)
    if weights.kind == "binary":
        # Courbariaux et al.'s Glorot init U(-H, H) with +-H binary weights is, in units of H, U(-1, 1) with sign(w):
        # the reals on the binary weights' scale, which matters where they are used as they are (stochastic
        # BinaryConnect tests with them, beside norm statistics gathered with the binary ones).
        g = torch.Generator().manual_seed(0xB1_0000 + seed)  # not the model init's stream (torch.manual_seed(seed))
        with torch.no_grad():
            for m in emu.layers:
                if emulation.binary_init == "uniform":
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 - 1)
                m.weight.clamp_(-1, 1)  # the masters live in [-1, 1] from the start
    emu.store_rounded()
    model.emulator = emu  # type: ignore[assignment]  (found by the training loop; not a submodule)
    return emu


def glorot_lr_scale(weight: torch.Tensor) -> float:
    """BinaryConnect's per-layer learning-rate factor 1 / sqrt(1.5 / (fan_in + fan_out)), fans counting the kernel
    (a (out, in, kh, kw) conv: in*kh*kw and out*kh*kw), as Glorot & Bengio's initialization coefficient does."""
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    return 1.0 / math.sqrt(1.5 / (fan_in + fan_out))


def emulator_of(model: nn.Module) -> Emulator | None:
    return getattr(model, "emulator", None) if isinstance(getattr(model, "emulator", None), Emulator) else None


def binarize(
    model: nn.Module, mode: str = "deterministic", activations: bool = False, seed: int = 0, init: str = "uniform"
) -> Any:
    """BinaryConnect in place: every nn.Conv2d and nn.Linear uses binary weights; returns the Emulator.

    init="uniform" redraws the real-valued weights from U(-1, 1) (the paper's init, config.py); "keep" keeps them.

    In a hand-written loop call `emulator.step(loss, optimizer, model, grad_clip=0)` in place of backward and
    optimizer.step(): it clips the real-valued weights to [-1, 1] after each update. activations=True also
    binarizes the activations (BinaryNet).
    """
    from cnnlab.precision.config import parse_emulation

    if mode not in BINARY_MODES:
        raise UnknownNameError("BinaryConnect mode", mode, BINARY_MODES)
    table = {"weights": "binary", "weights_rounding": "nearest" if mode == "deterministic" else "stochastic",
             "binary_init": init}  # fmt: skip
    if activations:
        table["activations"] = "binary"
    return emulate(model, parse_emulation(table), seed)
