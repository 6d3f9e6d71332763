"""Errors that the CLI turns into one line and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnlabError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


class UnknownNameError(CnnlabError, KeyError):
    """An unknown model, recipe, dataset or option name; the message suggests close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        known = sorted(known)
        # A name typed short ("smal" for small-filters) is a prefix, not a near spelling: difflib misses it.
        starts = [k for k in known if len(name) >= 3 and k.startswith(name)]
        close = list(dict.fromkeys([*starts, *difflib.get_close_matches(name, known, n=4, cutoff=0.5)]))[:4]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} '{name}'{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]
