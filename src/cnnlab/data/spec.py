"""Dataset spec strings, the same in the API and the CLI.

shapes[:key=value,...]      the embedded procedural set (keys: size, train, test, difficulty, seed, classes)
npz:PATH                    uint8 x_train/y_train/x_test/y_test, NHWC (or NHW for gray)
folder:PATH                 ImageFolder layout: PATH/[train|val|test/]class/*.png|jpg|...
cifar10:PATH, cifar100:PATH the official python-version pickles or binary-version .bin files
mnist:PATH                  IDX files, raw or .gz (MNIST, Fashion-MNIST, KMNIST)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import CnnlabError, UnknownNameError

KINDS = ("shapes", "npz", "folder", "cifar10", "cifar100", "mnist")

# Keys of the shapes spec, their types and defaults.
SHAPES_DEFAULTS: dict[str, int | float] = {
    "size": 32,
    "train": 10_000,
    "test": 2_000,
    "difficulty": 0.3,  # tuned: small convnets learn it in seconds, raw-pixel linear models stay near chance
    "seed": 0,
    "classes": 10,
}


@dataclass(frozen=True)
class Spec:
    kind: str
    path: Path | None = None
    options: dict[str, int | float] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind == "shapes":
            return "shapes:" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.kind}:{self.path}"


def _parse_value(key: str, text: str, default: int | float) -> int | float:
    try:
        return type(default)(text) if isinstance(default, int) else float(text)
    except ValueError:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise CnnlabError(f"shapes spec: {key}={text!r} is not {kind}") from None


def parse_spec(spec: str | Spec) -> Spec:
    """Parse a spec string; unknown kinds and keys raise with close-match suggestions."""
    if isinstance(spec, Spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise CnnlabError(f"empty dataset spec; use one of {', '.join(KINDS)}")
    kind, sep, rest = spec.strip().partition(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise UnknownNameError("dataset kind", kind, KINDS)
    if kind == "shapes":
        options = dict(SHAPES_DEFAULTS)
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip()
            if key not in SHAPES_DEFAULTS:
                raise UnknownNameError("shapes option", key, SHAPES_DEFAULTS)
            if not eq:
                raise CnnlabError(f"shapes spec: option {key!r} needs a value ({key}=...)")
            options[key] = _parse_value(key, value.strip(), SHAPES_DEFAULTS[key])
        return Spec("shapes", None, options)
    if not sep or not rest:
        raise CnnlabError(f"dataset spec '{spec}' needs a path: {kind}:PATH")
    return Spec(kind, expand_path(rest, f"dataset spec '{spec}'"), {})


def expand_path(text: str, what: str) -> Path:
    """`text` as a Path with ~ expanded; an unknown ~user is one line, not a RuntimeError."""
    try:
        return Path(text).expanduser()
    except RuntimeError as e:  # Path('~nobody').expanduser() when there is no such user or home
        raise CnnlabError(f"{what}: cannot expand '~' in {text} ({e})") from None
