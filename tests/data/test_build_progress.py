"""A cache build draws a bar over its slow loop (drawing, resizing, decoding images) on a terminal, once it has
taken a second; a log, and any cache hit, get nothing."""

from __future__ import annotations

import io
import itertools
import sys

import numpy as np
import pytest
from PIL import Image

from cnnlab import data
from cnnlab.train import progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def slow_clock(monkeypatch):
    """Every perf_counter read is one second later: each build outlasts the bar's one-second delay."""
    ticks = itertools.count()
    monkeypatch.setattr(progress.time, "perf_counter", lambda: float(next(ticks)))


def _npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    x = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(40) % 4, x_test=x[:8], y_test=np.arange(8) % 4)
    return path


def _folder(tmp_path):
    root = tmp_path / "pics"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (20, 20), (40 * i, 100, 200 if c == "cat" else 0)).save(root / c / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "kind, desc, images",
    [("shapes", "caching shapes at 16px", 96), ("npz", "caching tiny at 24px", 48), ("folder", "caching pics", 10)],
)
def test_a_build_shows_a_bar_on_a_terminal_and_nothing_in_a_log(tmp_path, monkeypatch, slow_clock, kind, desc, images):
    spec, size = {
        "shapes": ("shapes:size=16,train=64,test=32", None),
        "npz": (f"npz:{_npz(tmp_path)}", 24),
        "folder": (f"folder:{_folder(tmp_path)}", None),
    }[kind]
    term = Tty()
    monkeypatch.setattr(sys, "stderr", term)
    data.load(spec, size=size, cache_dir=tmp_path / "a")
    frames = [f for f in term.getvalue().split("\r") if f.startswith(desc)]
    assert frames, repr(term.getvalue())
    assert f"{images}/{images}" in frames[-1] and "img/s" in frames[-1] and frames[-1].endswith("\n"), frames[-1]

    hit = Tty()  # the same entry again: a cache hit draws nothing
    monkeypatch.setattr(sys, "stderr", hit)
    data.load(spec, size=size, cache_dir=tmp_path / "a")
    assert hit.getvalue() == ""

    log = io.StringIO()  # a fresh build, not on a terminal: not one character
    monkeypatch.setattr(sys, "stderr", log)
    data.load(spec, size=size, cache_dir=tmp_path / "b")
    assert log.getvalue() == ""


def test_a_build_quicker_than_a_second_leaves_no_trace_on_a_terminal(tmp_path, monkeypatch):
    term = Tty()
    monkeypatch.setattr(sys, "stderr", term)
    data.load("shapes:size=16,train=8,test=8", cache_dir=tmp_path)  # milliseconds
    assert term.getvalue() == ""
