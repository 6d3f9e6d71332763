"""cnnlab.timing with fake clocks: the rotation, the warm-up left out, medians and spread, several clocks."""

from __future__ import annotations

import csv
import os

import pytest

from cnnlab import timing
from cnnlab.errors import UnknownNameError


class FakeClock:
    """A clock that moves only when a contender says how long it took."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def contenders(clock: FakeClock, durations: dict[str, list[float]], log: list[str]) -> dict:
    """name -> fn; each call logs the name and advances the clock by the name's next duration."""
    left = {k: iter(v) for k, v in durations.items()}

    def make(name: str):
        def fn() -> None:
            log.append(name)
            clock.t += next(left[name])

        return fn

    return {name: make(name) for name in durations}


def test_rotations_shift_the_order_by_one_per_round():
    assert list(timing.rotations(["a", "b", "c"], 4)) == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_interleave_warms_up_in_order_then_rotates():
    log: list[str] = []
    fns = {k: (lambda k=k: log.append(k) or f"{k}{len(log)}") for k in "abc"}
    got = timing.interleave(fns, rounds=3, warmup=1)
    assert log == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    # what each call of each round returned, warm-up left out, in round order
    assert got == {"a": ["a4", "a9", "a11"], "b": ["b5", "b7", "b12"], "c": ["c6", "c8", "c10"]}
    with pytest.raises(ValueError, match="at least 1"):
        timing.interleave(fns, rounds=0)


def test_time_interleaved_medians_and_spread(monkeypatch):
    clock, log = FakeClock(), []
    monkeypatch.setitem(timing.CLOCKS, "wall", clock)
    # first duration of each is the warm-up (huge: must not count), then rounds 1-5 in round order
    durations = {"fast": [100.0, 1.0, 3.0, 2.0, 9.0, 2.5], "slow": [100.0, 10.0, 30.0, 20.0, 11.0, 12.0]}
    got = timing.time_interleaved(
        contenders(clock, durations, log), rounds=5, includes={"fast": "the fast one", "slow": "the slow one"}
    )
    assert log == ["fast", "slow"] + ["fast", "slow", "slow", "fast"] * 2 + ["fast", "slow"]
    fast, slow = got["fast"], got["slow"]
    assert fast.samples == (1.0, 3.0, 2.0, 9.0, 2.5)
    assert (fast.median, fast.min, fast.max, fast.rounds) == (2.5, 1.0, 9.0, 5)
    assert (slow.median, slow.min, slow.max, slow.rounds) == (12.0, 10.0, 30.0, 5)
    assert (fast.clock, fast.includes, fast.unit) == ("wall", "the fast one", "s")
    assert slow.includes == "the slow one"


def test_time_interleaved_even_rounds_median_is_the_mean_of_the_middle_two(monkeypatch):
    clock = FakeClock()
    monkeypatch.setitem(timing.CLOCKS, "cpu", clock)
    got = timing.time_interleaved(
        contenders(clock, {"x": [0.0, 4.0, 1.0, 3.0, 2.0]}, []), rounds=4, clock="cpu", includes="x"
    )
    assert got["x"].median == 2.5 and got["x"].clock == "cpu"


def test_min_sample_sets_the_repetitions_from_the_warm_up(monkeypatch):
    clock, log = FakeClock(), []
    monkeypatch.setitem(timing.CLOCKS, "wall", clock)
    # warm-up 1 ms -> 5 calls per sample of >= 5 ms; each sample is the mean per call
    durations = {"x": [0.001] + [0.001] * 5 + [0.003] * 5}
    got = timing.time_interleaved(contenders(clock, durations, log), rounds=2, includes="x", min_sample_s=0.005)
    assert len(log) == 11
    assert got["x"].samples == pytest.approx((0.001, 0.003))


def test_sync_brackets_every_sample(monkeypatch):
    clock, log = FakeClock(), []
    monkeypatch.setitem(timing.CLOCKS, "wall", clock)
    fns = contenders(clock, {"a": [1.0, 1.0, 1.0]}, log)
    timing.time_interleaved(fns, rounds=2, includes="a", sync=lambda: log.append("sync"))
    assert log == ["sync", "a", "sync"] * 3  # warm-up + 2 rounds


def test_several_clocks_read_around_the_same_calls(monkeypatch):
    wall, cpu, log = FakeClock(), FakeClock(), []

    def make(name: str, waits: list[float], works: list[float]):
        it = iter(zip(waits, works))

        def fn() -> None:
            log.append(name)
            wait, work = next(it)
            wall.t += wait + work  # waiting for a core shows on the wall clock only
            cpu.t += work

        return fn

    monkeypatch.setitem(timing.CLOCKS, "wall", wall)
    monkeypatch.setitem(timing.CLOCKS, "cpu", cpu)
    fns = {"a": make("a", [0, 5, 0, 0], [1, 2, 3, 4]), "b": make("b", [0, 0, 7, 0], [2, 2, 2, 2])}
    got = timing.time_interleaved_by_clock(fns, rounds=3, includes="both", clocks=("wall", "cpu"))
    assert log == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert got["cpu"]["a"].samples == (2, 3, 4) and got["wall"]["a"].samples == (7, 3, 4)
    assert got["cpu"]["b"].samples == (2, 2, 2) and got["wall"]["b"].samples == (2, 9, 2)
    assert got["wall"]["b"].median == 2 and got["wall"]["b"].max == 9 and got["cpu"]["a"].clock == "cpu"


def test_interleave_figures_keeps_what_each_contender_measured():
    figures = {"a": iter([0.0, 30.0, 10.0, 20.0]), "b": iter([0.0, 5.0, 6.0, 4.0])}
    got = timing.interleave_figures(
        {k: (lambda k=k: next(figures[k])) for k in figures},
        rounds=3,
        clock="wall",
        includes="steady-state steps",
        unit="img/s",
    )
    assert got["a"].samples == (30.0, 10.0, 20.0) and got["a"].median == 20.0 and got["a"].unit == "img/s"
    assert (got["b"].min, got["b"].max, got["b"].rounds) == (4.0, 6.0, 3)


def test_unknown_clock_is_named():
    with pytest.raises(UnknownNameError, match="unknown clock 'wal'"):
        timing.time_interleaved({"a": lambda: None}, 1, includes="a", clock="wal")
    with pytest.raises(UnknownNameError, match="unknown clock"):
        timing.interleave_figures({"a": lambda: 1.0}, 1, clock="gpu", includes="a", unit="s")


def test_benchmark_csv_puts_the_machine_columns_last(tmp_path):
    path = tmp_path / "sub" / "r.csv"
    old = os.umask(0o027)
    try:
        timing.write_benchmark_csv(path, [{"a": 1, "b": 2}, {"a": 3, "c": 4, "torch": "mine"}])
    finally:
        os.umask(old)
    rows = list(csv.DictReader(path.open()))
    machine = timing.machine_columns()
    assert list(rows[0]) == ["a", "b", "c", *machine] and set(machine) >= {"cpu", "cpu_flags", "torch", "threads"}
    assert rows[0]["c"] == "" and rows[1]["b"] == "" and rows[1]["torch"] == machine["torch"]
    assert path.stat().st_mode & 0o777 == 0o640  # the user's umask, as a file written in place
    with pytest.raises(ValueError, match="no rows"):
        timing.write_benchmark_csv(tmp_path / "empty.csv", [])
