"""The model registry: a plain dict name -> (family, spec), and the one strict factory."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cnnlab.errors import UnknownNameError
from cnnlab.models import FAMILIES
from cnnlab.models.base import ClassifierNet, Family, Paper, Published


@dataclass(frozen=True)
class Entry:
    name: str
    family: Family
    spec: Any


def build_table(families: tuple[Family, ...]) -> dict[str, Entry]:
    """name -> Entry for every variant of `families`; a name registered twice raises RuntimeError."""
    table: dict[str, Entry] = {}
    for family in families:
        for name, spec in family.specs.items():
            if name in table:
                raise RuntimeError(f"model '{name}' is registered twice ({table[name].family.name}, {family.name})")
            table[name] = Entry(name, family, spec)
    return table


@cache
def _registry() -> dict[str, Entry]:
    return build_table(FAMILIES)


def get_entry(name: str) -> Entry:
    table = _registry()
    if name not in table:
        raise UnknownNameError("model", name, table)
    return table[name]


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching an fnmatch pattern (`"resnet*"`, `"*_bn"`)."""
    return sorted(n for n in _registry() if fnmatch.fnmatchcase(n, pattern))


def resolve_spec(name: str, **overrides: Any) -> Any:
    """The variant's spec with `overrides` applied; an unknown field raises TypeError naming it."""
    entry = get_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.spec)}
    for key in overrides:
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TypeError(f"{name}: unknown override '{key}'{hint} (spec fields: {', '.join(sorted(fields))})")
    return dataclasses.replace(entry.spec, **overrides)


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    weights: str | Path | None = None,
    **overrides: Any,
) -> ClassifierNet:
    """Build a registered model.

    `overrides` are fields of the family's spec (checked: a misspelt key raises TypeError). `weights` is any
    source cnnlab.weights.read_weights takes (a `.safetensors`, `.pt` or `.pth` file with cnnlab's, torchvision's
    or timm's keys, a run directory or checkpoint, torchvision:NAME), read without unpickling code.
    With weights and no `num_classes`, the class count is taken from the file; with both, they must agree.
    """
    entry = get_entry(name)
    spec = resolve_spec(name, **overrides)
    state = None
    if weights is not None:
        from cnnlab.weights import read_weights

        state, _ = read_weights(weights)  # read first: a bad file fails before any network is built
    requested = num_classes
    if in_chans is None:
        in_chans = entry.family.input_size(name, spec)[0]  # LeNet-5 reads 1-channel images
    if num_classes is None:
        num_classes = entry.family.default_num_classes(name, spec)
    model = entry.family.build(spec, num_classes=num_classes, in_chans=in_chans)
    model.model_name = name
    if state is not None:
        from cnnlab.weights import load_into

        # No class count asked for: take the file's; one asked for: a file for another count does not fit.
        load_into(model, state, str(weights), family=entry.family, head="adopt" if requested is None else "strict")
    return model


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    paper: Paper
    input_size: tuple[int, int, int]
    min_input_size: int  # pixels, in training mode (auxiliary heads included)
    min_eval_input_size: int  # pixels, in eval mode (inception_v3: 75, where training needs 299)
    published: Published
    deviations: tuple[str, ...]
    torchvision: str | None
    spec: Any
    params: int  # of the default build (the family's default class count), counted

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["spec"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.spec).items()}
        return d


@cache
def model_info(name: str) -> ModelInfo:
    """Family, paper, default and minimum input size, published figures and deviations of a variant."""
    entry = get_entry(name)
    fam = entry.family
    spec = entry.spec
    # The minimum input size is a property of the built network; building on the meta device costs no memory.
    import torch

    input_size = fam.input_size(name, spec)
    with torch.device("meta"):
        net = fam.build(spec, num_classes=fam.default_num_classes(name, spec), in_chans=input_size[0])
    return ModelInfo(
        name=name,
        family=fam.name,
        paper=fam.papers.get(name, fam.paper),
        input_size=input_size,
        min_input_size=net.min_input_size,
        min_eval_input_size=net.smallest_input(training=False),
        published=fam.published.get(name, Published()),
        deviations=tuple(fam.deviations.get("*", ())) + tuple(fam.deviations.get(name, ())),
        torchvision=fam.torchvision.get(name),
        spec=spec,
        params=sum(p.numel() for p in net.parameters()),
    )
