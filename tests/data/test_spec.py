from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.data.spec import SHAPES_DEFAULTS, parse_spec
from cnnlab.errors import CnnlabError, UnknownNameError


def test_shapes_defaults_and_options() -> None:
    s = parse_spec("shapes")
    assert s.kind == "shapes" and s.options == SHAPES_DEFAULTS
    s = parse_spec("shapes:size=64, train=500,difficulty=0.25,seed=3,classes=12,test=7")
    assert s.options == {"size": 64, "train": 500, "test": 7, "difficulty": 0.25, "seed": 3, "classes": 12}
    assert parse_spec(str(s)) == s  # the canonical string round-trips


@pytest.mark.parametrize("kind", ["npz", "folder", "cifar10", "cifar100", "mnist"])
def test_path_kinds(kind: str) -> None:
    s = parse_spec(f"{kind}:some/dir:with,odd chars")
    assert s.kind == kind and s.path == Path("some/dir:with,odd chars")


@pytest.mark.parametrize(
    ("text", "err", "needle"),
    [
        ("shapez", UnknownNameError, "did you mean shapes"),
        ("cifar:x", UnknownNameError, "cifar10"),
        ("shapes:sise=3", UnknownNameError, "did you mean size"),
        ("shapes:size=big", CnnlabError, "not an integer"),
        ("shapes:size", CnnlabError, "needs a value"),
        ("npz", CnnlabError, "needs a path"),
        ("", CnnlabError, "empty"),
    ],
)
def test_bad_specs(text: str, err: type, needle: str) -> None:
    with pytest.raises(err) as e:
        parse_spec(text)
    assert needle in str(e.value) and "\n" not in str(e.value)
