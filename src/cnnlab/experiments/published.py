"""The papers' figures, read from published.toml (data with its sources, beside the code that prints it)."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@cache
def _table() -> dict[str, dict[str, str]]:
    return tomllib.loads((Path(__file__).with_name("published.toml")).read_text(encoding="utf-8"))


def published(experiment: str) -> dict[str, str]:
    return _table()[experiment]
