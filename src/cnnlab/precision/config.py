"""The recipe's `emulate` table: which number format and rounding each part of a training step uses.

    emulate = { weights = "fixed<4,12>", activations = "fixed<4,12>", gradients = "fixed<4,12>",
                update = "fixed<4,12>", rounding = "stochastic", master = false }

Keys (every one optional; an empty table, the default, is plain fp32 training):
  weights, activations, gradients, update: a format (cnnlab.precision.formats.parse_format); default fp32.
  rounding: "nearest" or "stochastic" for all four; `weights_rounding`, ... override it per part.
  master: keep fp32 master weights (True, the default) or store the weights themselves in the weights format.
  loss_scale: "off" (default), a number (static), or "dynamic" (start at `init_scale`, halve on an overflow and
    skip the step, double after `growth_interval` good steps; Micikevicius et al. 2017, Sec. 3.2).
  init_scale (65536), growth_interval (2000): the dynamic scaler's.
  eval_rounding: rounding in evaluation ("nearest", the default, so a score is reproducible).
  binary_init: with binary weights, "uniform" (the default) draws the real-valued weights from U(-1, 1) when the
    emulation is attached; "keep" keeps the model's initialization. Courbariaux et al. draw them from Glorot's
    U(-H, H) and binarize to +-H; cnnlab binarizes to +-1 (sign(w), exactly), so the same init in units of H is
    U(-1, 1). Weights loaded afterwards (pretrained, a checkpoint) replace them either way.
  binary_lr_scale: with binary weights, "glorot" (the default) multiplies each binarized layer's weight update by
    1 / sqrt(1.5 / (fan_in + fan_out)), as Courbariaux et al. scale the learning rates "with the weights
    initialization coefficients from Glorot & Bengio" (BinaryConnect Sec. 3): weights in [-1, 1] then move far
    enough per step to flip signs; "none" leaves the optimizer's update as it is.
A `--set emulate.weights=fp16` on the command line sets one key of the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.precision.formats import Format, parse_format
from cnnlab.precision.quantize import check_rounding

PARTS = ("weights", "activations", "gradients", "update")
KEYS = (
    *PARTS,
    "rounding",
    *(f"{p}_rounding" for p in PARTS),
    "master",
    "loss_scale",
    "init_scale",
    "growth_interval",
    "eval_rounding",
    "binary_init",
    "binary_lr_scale",
)
BINARY_INITS = ("uniform", "keep")
BINARY_LR_SCALES = ("glorot", "none")


@dataclass(frozen=True)
class Emulation:
    formats: dict[str, Format] = field(default_factory=dict)  # part -> format (all four present)
    roundings: dict[str, str] = field(default_factory=dict)  # part -> rounding
    master: bool = True
    loss_scale: str = "off"  # "off" | "static" | "dynamic"
    init_scale: float = 1.0
    growth_interval: int = 2000
    eval_rounding: str = "nearest"
    binary_init: str = "uniform"  # with binary weights: U(-1, 1) at attach, or "keep" (see the module docstring)
    binary_lr_scale: str = "glorot"  # with binary weights: each layer's update times 1/sqrt(1.5/(fan_in+fan_out))

    @property
    def active(self) -> bool:
        """False when every part is fp32 and nothing is scaled: training is then the engine's plain fp32."""
        plain = all(f.name == "fp32" for f in self.formats.values())
        return not (plain and self.loss_scale == "off")

    def describe(self) -> str:
        parts = ", ".join(f"{p} {self.formats[p].name} ({self.roundings[p]})" for p in PARTS)
        scale = {"off": "no loss scaling", "static": f"loss scale {self.init_scale:g}",
                 "dynamic": f"dynamic loss scale from {self.init_scale:g}"}[self.loss_scale]  # fmt: skip
        return f"{parts}; {'fp32 master weights' if self.master else 'no master weights'}; {scale}"


def parse_emulation(table: dict[str, Any] | None) -> Emulation:
    """The checked `emulate` table; a CnnlabError (one line) names the first bad key or value."""
    table = dict(table or {})
    for key in table:
        if key not in KEYS:
            raise UnknownNameError("emulate key", key, KEYS)

    def text(key: str, default: str) -> str:
        v = table.get(key, default)
        if not isinstance(v, str):
            raise CnnlabError(f"recipe: emulate.{key} must be a string, got {v!r}")
        return v

    try:
        base = check_rounding(text("rounding", "nearest"))
        formats = {p: parse_format(text(p, "fp32")) for p in PARTS}
        roundings = {p: check_rounding(text(f"{p}_rounding", base)) for p in PARTS}
        eval_rounding = check_rounding(text("eval_rounding", "nearest"))
        binary_init = text("binary_init", "uniform")
        if binary_init not in BINARY_INITS:
            raise UnknownNameError("binary_init", binary_init, BINARY_INITS)
        binary_lr_scale = text("binary_lr_scale", "glorot")
        if binary_lr_scale not in BINARY_LR_SCALES:
            raise UnknownNameError("binary_lr_scale", binary_lr_scale, BINARY_LR_SCALES)
    except CnnlabError as e:
        raise CnnlabError(f"recipe: emulate: {e}") from None
    master = table.get("master", True)
    if not isinstance(master, bool):
        raise CnnlabError(f"recipe: emulate.master must be true or false, got {master!r}")
    if formats["weights"].kind == "binary" and not master:
        raise CnnlabError("recipe: emulate: binary weights need real-valued master weights (master = true)")
    scale = table.get("loss_scale", "off")
    init = table.get("init_scale", 65536.0)
    if isinstance(scale, bool) or not isinstance(scale, (str, int, float)):
        raise CnnlabError(f"recipe: emulate.loss_scale must be off, dynamic or a number, got {scale!r}")
    if isinstance(scale, str):
        if scale not in ("off", "dynamic"):
            raise CnnlabError(f"recipe: emulate.loss_scale must be off, dynamic or a number, got '{scale}'")
        mode = scale
    else:
        mode, init = "static", scale
    if isinstance(init, bool) or not isinstance(init, (int, float)) or not (math.isfinite(init) and init > 0):
        raise CnnlabError(f"recipe: emulate: the loss scale must be a positive number, got {init!r}")
    growth = table.get("growth_interval", 2000)
    if isinstance(growth, bool) or not isinstance(growth, int) or growth < 1:
        raise CnnlabError(f"recipe: emulate.growth_interval must be an integer >= 1, got {growth!r}")
    scale_init = float(init) if mode != "off" else 1.0
    return Emulation(formats, roundings, master, mode, scale_init, growth, eval_rounding, binary_init, binary_lr_scale)
