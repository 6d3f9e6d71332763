"""What an experiment is: a frozen config, a list of arms, a number of seeds and the claims it judges.

An experiment module defines one `Experiment`. Its config is a frozen dataclass (checked like a recipe: a
misspelt `--set` key or a value of the wrong type fails before any data is read); `arms(cfg)` lists what is
compared, each a zoo model through the strict `create_model` path plus recipe overrides; `judge(cfg, results)`
turns the measured numbers into verdicts with the rules of cnnlab.experiments.stats.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, UnknownNameError


@dataclass(frozen=True)
class Arm:
    """One thing compared: a registered model (with spec overrides) trained with recipe overrides."""

    name: str  # short and file-safe: the trial directories are named after it
    label: str  # as the report prints it
    model: str
    model_args: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    # The trial's training data: "" is the experiment's DIR/data.npz; a name is DIR/data-NAME.npz, one of the
    # files `Experiment.datasets` makes (e.g. transfer's source task and its target task at N images per class).
    data: str = ""
    # The name of an earlier arm: its trial of the same seed (a run directory) becomes this trial's `weights`.
    weights_from: str = ""


@dataclass(frozen=True)
class Setup:
    """Fields every training experiment has; an experiment's config subclasses it and adds its own."""

    data: str = "cifar10"  # resolved by cnnlab.experiments.data (--data, CNNLAB_CIFAR10, a configured path)
    seeds: int = 3
    train_images: int = 10_000  # a stratified subset of the training split (0: all of it)
    test_images: int = 2_000  # a stratified subset of the test split (0: all of it)
    val_fraction: float = 0.1  # carved from the training subset: picks the checkpoint, draws the held-out curve
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 1e-4
    augment: str = "flip,crop:4"
    threads: int = 0  # torch threads per trial; 0: torch's default
    checkpoint_every: int = 50  # optimizer steps: a killed trial loses at most this many


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str  # one line, for `reproduce list`
    source: str  # the paper and section
    config: type  # a frozen dataclass, subclass of Setup
    quick: dict[str, Any]  # overrides for --quick (CI: under about a minute)
    paper: dict[str, Any]  # overrides for --scale paper (the paper's schedule; for a GPU)
    arms: Callable[[Any], list[Arm]]
    judge: Callable[[Any, dict[str, Any]], list[dict[str, Any]]]
    needs_channels: int | None = 3  # None: any
    min_classes: int = 2
    extra: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None  # analytic numbers (params, MACs, RF)
    # Per-arm data: (config, the arrays of data.npz) -> {name: arrays of the same keys}, each written once as
    # DIR/data-NAME.npz for the arms whose `data` is NAME (cnnlab.experiments.data.prepare).
    datasets: Callable[[Any, dict[str, Any]], dict[str, dict[str, Any]]] | None = None
    # More of the report: (config, results, DIR) -> markdown lines after the arms' table (may draw a figure in DIR).
    report: Callable[[Any, dict[str, Any], Path], list[str]] | None = None
    # Measurements on the finished trials: (config, results, DIR, device, log) -> results["evaluation"], before
    # `extra` and `judge` (test-time reads the trials' run directories; it should cache what it computes in DIR
    # so that a re-run after a kill does not repeat it).
    evaluate: Callable[[Any, dict[str, Any], Path, str, Callable[[str], None]], dict[str, Any]] | None = None
    # A measurement, not a training claim (data-pipeline): (config, DIR, device, log) -> {"claims": [...], ...}
    # replaces the arms and trials; `arms` then returns []. It should keep what it measured in DIR as it goes,
    # so that a re-run after a kill continues. The runner adds provenance, timing and commands, and writes the
    # report (its own lines and figures through `report`).
    measure: Callable[[Any, Path, str, Callable[[str], None]], dict[str, Any]] | None = None


def read_early_train_error(trials: list[dict[str, Any]], early_fraction: float, epochs: int) -> int:
    """Each trial's training error at the epoch at `early_fraction` of the run (at least the first), read from its
    curve into t["early_train_error"] (nothing is re-evaluated); returns that epoch (1-based)."""
    k = max(1, round(early_fraction * epochs))
    for t in trials:
        t["early_train_error"] = t["train_error"][k - 1]
    return k


SCALES = ("full", "quick", "paper")

# The CI size every CIFAR experiment starts its `quick` from (a few hundred steps; the numbers mean little), and
# the paper scale's data: all of it, 5 seeds. Experiments add what is their own (depths, widths, epochs).
QUICK: dict[str, Any] = {"train_images": 512, "test_images": 300, "epochs": 2, "seeds": 2, "batch_size": 64}
PAPER: dict[str, Any] = {"train_images": 0, "test_images": 0, "seeds": 5}


def make_config(exp: Experiment, scale: str = "full", changes: dict[str, Any] | None = None) -> Any:
    """The experiment's config at `scale`, with `changes` (from a TOML file or --set) checked by type."""
    if scale not in SCALES:
        raise UnknownNameError("scale", scale, SCALES)
    base = {"quick": exp.quick, "paper": exp.paper}.get(scale, {})
    values = {**base, **(changes or {})}
    hints = typing.get_type_hints(exp.config)
    out = {}
    for key, value in values.items():
        if key not in hints:
            raise UnknownNameError(f"{exp.name} config key", key, hints)
        out[key] = coerce(key, value, hints[key])
    cfg = exp.config(**out)
    check(cfg)
    return cfg


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Ints widen to floats and lists become tuples; anything else of the wrong type is one line."""
    if typing.get_origin(tp) is tuple:
        (elem, *_) = typing.get_args(tp)
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(coerce(key, v, elem) for v in items)
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise CnnlabError(f"config: {key} must be {getattr(tp, '__name__', tp)}, got {value!r}")
    return float(value) if tp is float else value


def check(cfg: Any) -> None:
    if cfg.seeds < 1:
        raise CnnlabError(f"config: seeds must be at least 1, got {cfg.seeds}")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise CnnlabError(f"config: {name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("train_images", "test_images", "threads", "checkpoint_every"):
        if getattr(cfg, name) < 0:
            raise CnnlabError(f"config: {name} must be >= 0, got {getattr(cfg, name)}")
    if not cfg.lr > 0 or cfg.weight_decay < 0 or not 0 < cfg.val_fraction < 1:
        raise CnnlabError("config: lr must be > 0, weight_decay >= 0 and val_fraction in (0, 1)")


def to_dict(cfg: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
