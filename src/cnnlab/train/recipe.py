"""A training recipe: a frozen dataclass read from a flat TOML file, overridable with `--set key=value`.

Every field is checked against its type and range, so a misspelt key or a negative learning rate fails before
any data is read (DESIGN.md rule 10: configs are checked data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, UnknownNameError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPTIMIZERS = ("sgd", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "plateau", "cosine", "onecycle", "exp")
PRECISIONS = ("fp32", "bf16", "fp16")
UNITS = ("epoch", "iteration")
CHANNELS_LAST = ("auto", "true", "false")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run except the model's weights and the machine."""

    model: str = ""  # a registered model name; the CLI's MODEL argument overrides it
    # spec overrides passed to create_model, e.g. {groups = 4}; checked by the registry's strict factory
    model_args: dict[str, Any] = field(default_factory=dict, hash=False)  # (hash=False: the recipe stays hashable)
    data: str = ""  # a cnnlab.data spec ("shapes", "npz:path.npz", ...); --data overrides it
    image_size: int = 0  # 0: the data source's native size, raised to the model's minimum input if below it
    strict_size: bool = False  # refuse data below the model's minimum input instead of resizing it
    val_fraction: float = 0.1  # held out of the train split when the source has no val split
    # -- length
    epochs: int = 10
    iterations: int = 0  # > 0: stop after this many optimizer steps (He et al. count iterations)
    batch_size: int = 128  # the global batch, split over processes under DDP
    # -- optimizer
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False  # weight decay on norm scales/shifts and biases (off: they are not weights)
    betas: tuple[float, ...] = (0.9, 0.999)  # AdamW
    alpha: float = 0.9  # RMSprop's smoothing constant
    eps: float = 1e-8
    # -- schedule
    schedule: str = "cosine"
    milestones: tuple[float, ...] = ()  # step: in `milestone_unit`s
    milestone_unit: str = "epoch"
    gamma: float = 0.1  # step/plateau/exp: the factor applied at each drop (exp: per epoch)
    warmup_epochs: float = 0.0  # linear warm-up from lr * warmup_start
    warmup_start: float = 0.1
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    plateau_patience: int = 3  # epochs without a better val accuracy before dividing
    plateau_threshold: float = 1e-3
    onecycle_pct: float = 0.3  # fraction of the run spent rising
    onecycle_div: float = 25.0  # start lr = lr / div
    onecycle_final_div: float = 1e4  # end lr = lr / (div * final_div)
    # -- regularization
    label_smoothing: float = 0.0
    dropout: float = -1.0  # >= 0: set every nn.Dropout's p; -1 keeps the model's
    augment: str = "flip,crop:4"
    aux_weight: float = 0.3  # auxiliary heads' loss weight (GoogLeNet, Szegedy et al. 2014 Sec. 5)
    # -- transfer learning (`cnnlab train --weights/--freeze/--lr-mult/--unfreeze-at`; docs/transfer.md)
    weights: str = ""  # start from: a run directory or checkpoint, a torchvision/timm state_dict, torchvision:NAME
    freeze: str = "none"  # none, backbone (stem and every stage) or stages:K (stem and the K lowest stages)
    lr_mult: str = ""  # learning-rate multipliers by part, e.g. "head=1,stages=0.1,stem=0.01" (stageK: one stage)
    unfreeze_at: int = 0  # > 0: the frozen parts train from this epoch on (gradual unfreezing); 0: never
    # -- numerics and speed
    precision: str = "fp32"
    # Emulated number formats (cnnlab.precision.config): e.g. { weights = "fp16", master = false }, or
    # `--set emulate.gradients=fp16`; {} (the default) trains in plain fp32. Emulation runs in fp32 on any device.
    emulate: dict[str, Any] = field(default_factory=dict, hash=False)
    # "auto": channels-last on the CPU (oneDNN's preferred layout: 52 of the 76 zoo models trained faster, median
    # 1.05x, on a CPU not recorded; 14 of 16 on an AVX2 EPYC, median 1.07x; docs/training.md) and on CUDA with
    # fp16/bf16 (tensor cores); NCHW otherwise.
    channels_last: str = "auto"
    compile: bool = False
    ema_decay: float = 0.0  # 0: no EMA; e.g. 0.999
    grad_clip: float = 0.0  # max global grad norm; 0: none
    seed: int = 0
    threads: int = 0  # torch threads; 0 leaves torch's default (recorded either way for exact resume)
    # -- bookkeeping
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0: only at epoch ends
    keep_last: int = 2  # step checkpoints kept (the newest good one plus fall-backs)
    max_nonfinite: int = 5  # consecutive non-finite losses before the run stops
    eval_batch_size: int = 256
    # > 0: each epoch also evaluates this many training images (a fixed random subset, the same for every seed) without
    # augmentation, as metrics.csv's clean_train_loss/clean_train_acc: the training error a train-test gap is
    # measured from (the running train_acc is over augmented batches while the weights change).
    train_eval_images: int = 0
    progress: bool = True
    plots: bool = True  # curves.png at the end of the run
    tensorboard: bool = False  # TensorBoard event files in RUN_DIR/tensorboard (cnnlab.train.tensorboard)

    def __post_init__(self) -> None:
        def bad(msg: str) -> CnnlabError:
            return CnnlabError(f"recipe: {msg}")

        # The TOML form (lists, not tuples) whoever built the recipe, so that it equals itself read back.
        object.__setattr__(self, "model_args", _plain_table("model_args", self.model_args))
        object.__setattr__(self, "emulate", _plain_table("emulate", self.emulate))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise bad(f"{f.name} must be a finite number, got {value}")
        if not self.lr > 0:
            raise bad(f"lr must be positive, got {self.lr}")
        for name in ("epochs", "batch_size", "eval_batch_size", "keep_last", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("iterations", "checkpoint_every", "threads", "image_size", "plateau_patience",
                     "train_eval_images"):  # fmt: skip
            if getattr(self, name) < 0:
                raise bad(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("weight_decay", "momentum", "warmup_epochs", "grad_clip", "min_lr_ratio", "eps"):
            if getattr(self, name) < 0:
                raise bad(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise bad(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.ema_decay < 1:
            raise bad(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not (self.dropout == -1 or 0 <= self.dropout < 1):
            raise bad(f"dropout must be in [0, 1) (or -1 to keep the model's), got {self.dropout}")
        if not 0 <= self.val_fraction < 1:
            raise bad(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 < self.onecycle_pct < 1:
            raise bad(f"onecycle_pct must be in (0, 1), got {self.onecycle_pct}")
        if not 0 < self.gamma <= 1:
            raise bad(f"gamma must be in (0, 1], got {self.gamma}")
        if self.aux_weight < 0:
            raise bad(f"aux_weight must be >= 0, got {self.aux_weight}")
        if len(self.betas) != 2:
            raise bad(f"betas needs two values, got {list(self.betas)}")
        if list(self.milestones) != sorted(self.milestones) or any(m <= 0 for m in self.milestones):
            raise bad(f"milestones must be positive and increasing, got {list(self.milestones)}")
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("milestone_unit", UNITS),
            ("channels_last", CHANNELS_LAST),
        ):
            if getattr(self, name) not in allowed:
                raise UnknownNameError(f"recipe {name}", getattr(self, name), allowed)
        if not re.fullmatch(r"none|backbone|stages:\d+", self.freeze):
            raise CnnlabError(f"--freeze must be none, backbone or stages:K, got '{self.freeze}'")
        if self.unfreeze_at < 0:
            raise CnnlabError(f"--unfreeze-at must be an epoch >= 1, got {self.unfreeze_at}")
        if self.unfreeze_at and self.freeze == "none":
            raise CnnlabError("--unfreeze-at needs --freeze backbone or --freeze stages:K (nothing is frozen)")
        if self.schedule == "step" and not self.milestones:
            raise bad("schedule 'step' needs milestones")
        from cnnlab.precision.config import parse_emulation

        if parse_emulation(self.emulate).active and self.precision != "fp32":
            raise bad(f"emulate and precision={self.precision} do not mix: emulation runs in fp32 (precision=fp32)")

    def replace(self, **changes: Any) -> Recipe:
        return from_dict({**to_dict(self), **changes})

    def to_toml(self) -> str:
        return to_toml(self)


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Recipe)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    args = typing.get_args(tp)
    if (typing.get_origin(tp) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0]
    return False, tp


def _plain_table(key: str, table: Any) -> dict[str, Any]:
    """A copy of a table of TOML values (str keys; tuples become lists), or a CnnlabError naming `key`."""

    def plain(path: str, v: Any) -> Any:
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise CnnlabError(f"recipe: {path} needs string keys, got {list(v)!r}")
            return {k: plain(f"{path}.{k}", x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(path, x) for x in v]
        if isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise CnnlabError(f"recipe: {path} must be a finite number, got {v}")
            return v
        raise CnnlabError(f"recipe: {path} must be a TOML value (number, string, bool, list or table), got {v!r}")

    if not isinstance(table, dict):
        raise CnnlabError(
            f'recipe: {key} must be a table, e.g. {key} = {{ groups = 4, block = "bottleneck" }} '
            f"(--set '{key}={{groups=4}}'; strings quoted); got {table!r}"
        )
    return plain(key, table)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the field type `tp`; ints widen to floats and lists become tuples, nothing else."""
    optional, tp = _is_optional(tp)
    if value is None and optional:
        return None
    origin = typing.get_origin(tp)
    if origin is dict or tp is dict:  # a TOML (inline) table; its keys are checked where the model is built
        return _plain_table(key, value)
    if origin is tuple:
        (elem, *_) = typing.get_args(tp)
        given = value
        if not isinstance(value, (list, tuple)):
            value = [value]  # `--set milestones=91` means a one-element list
        try:
            return tuple(_coerce(key, v, elem) for v in value)
        except CnnlabError:
            raise CnnlabError(
                f"recipe: {key} must be a list of {elem.__name__}s, e.g. {key}=[30, 60]; got {given!r}"
            ) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 64e3 iterations
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str and isinstance(value, str):
        return value
    elif tp is str and isinstance(value, bool):  # channels_last = true: a TOML bool for a yes/no/auto field
        return "true" if value else "false"
    type_name = getattr(tp, "__name__", str(tp))
    raise CnnlabError(f"recipe: {key} must be {type_name}, got {value!r}")


def from_dict(d: dict[str, Any]) -> Recipe:
    types_ = _field_types()
    clean = {}
    for key, value in d.items():
        if key not in types_:
            raise UnknownNameError("recipe key", key, types_)
        clean[key] = _coerce(key, value, types_[key])
    return Recipe(**clean)


def to_dict(recipe: Recipe) -> dict[str, Any]:
    d = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)}
    d["model_args"] = _plain_table("model_args", recipe.model_args)  # a copy: the frozen recipe keeps its own
    d["emulate"] = _plain_table("emulate", recipe.emulate)
    return d


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table: `{ groups = 4, depths = [2, 2, 2] }`
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} to TOML")


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def to_toml(recipe: Recipe) -> str:
    """The full recipe, every field written, so a run directory alone can repeat the run."""
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in to_dict(recipe).items())


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` with a TOML value (`lr=0.05`, `milestones=[30, 60]`, `nesterov=true`); bare words are strings."""
    if "=" not in item:
        raise CnnlabError(f"--set expects key=value, got '{item}'")
    key, raw = (s.strip() for s in item.split("=", 1))
    types_ = _field_types()
    table, _, sub = key.partition(".")
    if sub and table in types_ and typing.get_origin(types_[table]) is dict:
        # `--set emulate.weights=fp16`: one key of a table field, merged into the table by load_recipe
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        return key, value
    if key not in types_:
        raise UnknownNameError("recipe key", key, types_)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # `optimizer=adamw` needs no quotes
        if typing.get_origin(_is_optional(types_[key])[1]) is tuple and "," in raw:
            with contextlib.suppress(tomllib.TOMLDecodeError):  # `milestones=30,60` as people type it
                value = tomllib.loads(f"v = [{raw}]")["v"]
    return key, value


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or the name of a packaged recipe (`resnet_cifar`)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise CnnlabError(f"recipe file not found: {p}")
        return p
    known = builtin_recipes()
    if str(name_or_path) not in known:
        raise UnknownNameError("recipe", str(name_or_path), known)
    return CONFIG_DIR / f"{name_or_path}.toml"


def read_recipe_file(name_or_path: str | Path) -> dict[str, Any]:
    """The fields a recipe file sets (unchecked: from_dict checks them once merged)."""
    path = recipe_path(name_or_path)
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise CnnlabError(f"recipe {path}: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CnnlabError(f"recipe {path}: unreadable ({e})") from None


FAMILY_DIR = CONFIG_DIR / "families"


def family_defaults(model: str) -> tuple[dict[str, Any], Path | None]:
    """The fields of the model's family default (configs/families/<family>.toml) and that file.

    The recipe `cnnlab train MODEL` uses without `--recipe`: the optimizer, schedule and regularization of the
    family's paper, each file citing it; the length stays cnnlab's default (10 epochs) and the data is the
    user's. A `step` schedule's milestones are written for 10 epochs, so `--epochs N` scales them.
    """
    from cnnlab.registry import get_entry

    path = FAMILY_DIR / f"{get_entry(model).family.name}.toml"
    if not path.is_file():
        return {}, None
    return tomllib.loads(path.read_text()), path


def scale_length(base: Recipe, changes: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Let a length given on the command line win over the recipe's, moving the milestones with it.

    `--epochs 3` on a recipe that stops at `iterations = 64000` would otherwise be ignored; and a recipe's
    milestones (32k and 48k iterations, or epochs 30 and 60 of 90) keep their place in the run: they are scaled
    by the new length over the old. Returns the changes to apply and a one-line note (None: nothing moved).
    """
    changes = dict(changes)
    notes = []
    factor, unit = 1.0, base.milestone_unit
    if "epochs" in changes and "iterations" not in changes and base.iterations > 0:
        epochs = int(changes["epochs"])
        changes["iterations"] = 0
        notes.append(f"--epochs {epochs} replaces the recipe's iterations = {base.iterations}")
        if base.milestone_unit == "iteration":
            factor, unit = epochs / base.iterations, "epoch"
    elif "epochs" in changes and not base.iterations and base.milestone_unit == "epoch":
        factor = int(changes["epochs"]) / base.epochs
    elif changes.get("iterations") and base.iterations and base.milestone_unit == "iteration":
        factor = int(changes["iterations"]) / base.iterations
    if base.milestones and "milestones" not in changes and (factor != 1 or unit != base.milestone_unit):
        changes["milestones"] = [round(m * factor, 4) for m in base.milestones]
        changes["milestone_unit"] = unit
        old = ", ".join(f"{m:g}" for m in base.milestones)
        new = ", ".join(f"{m:g}" for m in changes["milestones"])
        notes.append(f"milestones [{old}] {base.milestone_unit}s scaled to [{new}] {unit}s")
    return changes, ("; ".join(notes) if notes else None)


def load_recipe(
    name_or_path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    **fields: Any,
) -> Recipe:
    """Defaults <- the TOML file <- `fields` <- `overrides` (`["lr=0.05", ...]` or a dict), each checked."""
    d = read_recipe_file(name_or_path) if name_or_path is not None else {}
    d.update(fields)
    if isinstance(overrides, dict):
        d.update(overrides)
    else:
        for item in overrides or []:
            merge_override(d, *parse_override(item))
    return from_dict(d)


def merge_override(d: dict[str, Any], key: str, value: Any, base: dict[str, Any] | None = None) -> None:
    """d[key] = value; a dotted key (`emulate.weights`) sets one key of the table field, kept from d or `base`."""
    table, _, sub = key.partition(".")
    if not sub:
        d[key] = value
        return
    merged = d.get(table, (base or {}).get(table, {}))
    d[table] = {**(merged if isinstance(merged, dict) else {}), sub: value}
