"""Published figures shipped with the package (references.toml), each kind with its source.

The zoo's per-variant figures (params, GMACs, top-1) are in each family's `published` table, not here; this
file holds the published figures the tests check that have no place there: torchvision's eval crops, the
count of GoogLeNet without its auxiliary heads, and the lecture's per-layer AlexNet table.
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path
from typing import Any

from cnnlab.errors import UnknownNameError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PATH = Path(__file__).with_name("references.toml")


@functools.cache
def _load() -> dict[str, dict[str, Any]]:
    return tomllib.loads(PATH.read_text(encoding="utf-8"))


def kinds() -> tuple[str, ...]:
    """The kinds of figure in references.toml, in file order."""
    return tuple(_load())


def _kind(kind: str) -> dict[str, Any]:
    data = _load()
    if kind not in data:
        raise UnknownNameError("kind of published figure", kind, data)
    return data[kind]


def published(kind: str) -> dict[str, Any]:
    """The figures of one kind, keyed by model or layer name in file order (a copy: safe to modify)."""
    return copy.deepcopy(_kind(kind)["figures"])


def source(kind: str) -> str:
    """Where the figures of `kind` were published."""
    return _kind(kind)["source"]
