"""Setting a run up: the model for the data (class count, channels, input size), pretrained weights and
freezing, and what the run's files record. `loop._setup` calls these for `cnnlab train`, `--resume` and every
experiment alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.train.data_adapter import DataBundle
from cnnlab.train.recipe import Recipe


def model_overrides(args: dict[str, Any]) -> dict[str, Any]:
    """Spec overrides as create_model takes them: TOML's lists (recipe.model_args, a checkpoint's meta) become
    tuples, nested too, as the specs' sequence fields are (`depths = [1, 1, 1]` -> `depths=(1, 1, 1)`)."""

    def tuples(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(tuples(x) for x in v)
        if isinstance(v, dict):
            return {k: tuples(x) for k, x in v.items()}
        return v

    return {k: tuples(v) for k, v in args.items()}


def create_with_overrides(name: str, args: dict[str, Any], **kwargs: Any) -> nn.Module:
    """create_model(name, **kwargs) with the spec overrides `args`; an unknown key or a value the family refuses
    is a one-line CnnlabError (the registry's TypeError names the key and the spec's fields)."""
    from cnnlab.registry import create_model, resolve_spec

    overrides = model_overrides(args)
    try:
        resolve_spec(name, **overrides)
    except TypeError as e:
        raise CnnlabError(str(e)) from None
    if not overrides:
        return create_model(name, **kwargs)
    try:
        return create_model(name, **kwargs, **overrides)
    except (TypeError, ValueError) as e:  # the family's checks of the spec (resnet: groups need bottlenecks)
        raise CnnlabError(f"{name} with model_args {args}: {e}") from None


def build_model(recipe: Recipe, data: DataBundle, model: nn.Module | None = None) -> nn.Module:
    """`recipe.model` from the registry for this data, with `recipe.model_args` (or `model` as given), with the
    recipe's dropout.

    The input size is checked by the caller once the data's size is settled (fit_input_size, check_input_size).
    """
    if model is None:
        if not recipe.model:
            raise CnnlabError("no model given: name one (cnnlab train MODEL ...) or set `model` in the recipe")
        model = create_with_overrides(
            recipe.model, recipe.model_args, num_classes=len(data.classes), in_chans=data.in_chans
        )
    elif recipe.model_args:
        raise CnnlabError("model_args apply to a registered model built from the recipe, not to a model given")
    if recipe.dropout >= 0:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = recipe.dropout
    attach_emulation(model, recipe.emulate, recipe.seed)
    return model


def attach_emulation(model: nn.Module, table: dict[str, Any] | None, seed: int = 0) -> None:
    """The recipe's emulated number formats (cnnlab.precision), swapped into the model in place; {}: none."""
    from cnnlab.precision.config import parse_emulation
    from cnnlab.precision.emulate import emulate

    emulation = parse_emulation(table)
    if emulation.active:
        emulate(model, emulation, seed)


def model_name(model: nn.Module) -> str:
    return getattr(model, "model_name", "") or type(model).__name__


def check_input_size(data: DataBundle, model: nn.Module) -> None:
    min_size = getattr(model, "min_input_size", 1)
    if data.image_size < min_size:
        raise CnnlabError(
            f"input {data.image_size}x{data.image_size} is too small for {model_name(model)}, which needs at least "
            f"{min_size}x{min_size}; set image_size (e.g. --set image_size={min_size}) or pick another model"
        )


def fit_input_size(recipe: Recipe, data: Any, model: nn.Module, log: Callable[[str], None]) -> Recipe:
    """The recipe, with image_size raised to the model's minimum when the data's own size is below it.

    LeNet-5 takes 32x32 and MNIST is 28x28 (LeCun et al. 1998 pad the digits to 32); a model is rather trained
    on upsampled images than refused. An image_size the user set is kept (and refused if too small), and
    `strict_size` keeps the refusal. Either way the resolution a model is trained at is said once.
    """
    min_size = getattr(model, "min_input_size", 1)
    name = model_name(model)
    if data.image_size < min_size and not recipe.image_size and not recipe.strict_size:
        # DEVIATION (LeNet-5 on MNIST): resized (antialiased bilinear) to 32, where the paper pads 28 -> 32.
        log(
            f"{data.spec} is {data.image_size}x{data.image_size}, below {name}'s minimum input: resized to "
            f"{min_size}x{min_size} (--set image_size=N chooses another size, --strict-size refuses instead)"
        )
        return recipe.replace(image_size=min_size)
    native = paper_input(model)
    if native and data.image_size != native and data.image_size >= min_size:
        log(f"training {name} at {data.image_size}x{data.image_size} (its paper's input is {native}x{native})")
    return recipe


def paper_input(model: nn.Module) -> int | None:
    """The input size a registered model's paper uses (None for a model built outside the registry)."""
    from cnnlab.registry import get_entry

    try:
        entry = get_entry(getattr(model, "model_name", ""))
    except (KeyError, CnnlabError):
        return None
    return int(entry.family.input_size(entry.name, entry.spec)[-1])


def model_meta(recipe: Recipe, data: DataBundle, model: nn.Module) -> dict[str, Any]:
    """What a weights file needs to be usable alone (eval, predict): architecture, classes, preprocessing."""
    return {
        "model": getattr(model, "model_name", "") or recipe.model,
        **({"model_args": dict(recipe.model_args)} if recipe.model_args else {}),  # lists, as in recipe.toml
        **({"emulate": dict(recipe.emulate)} if recipe.emulate else {}),  # eval and predict rebuild the formats
        "num_classes": len(data.classes),
        "in_chans": data.in_chans,
        "image_size": data.image_size,
        "classes": list(data.classes),
        "mean": [float(v) for v in data.mean],
        "std": [float(v) for v in data.std],
        "data": data.spec,
    }


@dataclass
class Transfer:
    """The fine-tuning part of a run: what is frozen, the learning-rate multipliers, gradual unfreezing."""

    plan: Any  # finetune.FreezePlan
    mults: dict[str, float]
    unfreeze_at: int

    def train_mode(self, model: nn.Module) -> None:
        from cnnlab.train.finetune import set_train_mode

        set_train_mode(model, self.plan)  # frozen BatchNorm stays in eval mode

    def epoch_start(self, model: nn.Module, epoch: int, log: Callable[[str], None]) -> None:
        from cnnlab.train.finetune import set_train_mode, unfreeze

        if self.unfreeze_at and self.plan.frozen and epoch >= self.unfreeze_at:
            parts = ", ".join(self.plan.frozen)
            unfreeze(model, self.plan)
            set_train_mode(model, self.plan)
            log(f"epoch {epoch + 1}: unfrozen {parts}")


def prepare_transfer(recipe: Recipe, model: nn.Module, load_weights: bool, log: Callable[[str], None]) -> Transfer:
    """Load `recipe.weights` (unless a checkpoint will replace them) and freeze as `recipe.freeze` says."""
    from cnnlab.train.finetune import FreezePlan, apply_freeze, parse_lr_mult, plan_freeze

    if recipe.weights and load_weights:
        from cnnlab.registry import get_entry
        from cnnlab.train.pretrained import load_pretrained, read_source

        family = get_entry(recipe.model).family
        for note in load_pretrained(model, family, read_source(recipe.weights), recipe.weights):
            log(note)
    elif recipe.weights:
        log(f"resume: weights come from the run's checkpoint, not {recipe.weights}")
    # Only a fine-tuning recipe needs the anatomy (custom networks passed to train() may have none).
    plan = plan_freeze(model, recipe.freeze) if recipe.freeze != "none" else FreezePlan()
    mults = parse_lr_mult(recipe.lr_mult, model) if recipe.lr_mult else {}
    apply_freeze(model, plan)
    if plan.frozen:
        log(f"frozen ({recipe.freeze}): {', '.join(plan.frozen)}; their BatchNorm stays in eval mode")
    return Transfer(plan, mults, recipe.unfreeze_at)
