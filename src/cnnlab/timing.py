"""The one timer of cnnlab's benchmarks: contenders in interleaved rounds, and the machine their figures come from.

Protocol (every benchmark, `cnnlab conv bench` included): each contender is called `warmup` times first
(imports, first-call caches, allocator growth, worker start-up: none of that is counted); then `rounds`
rounds, each calling every contender once, in an order rotated by one per round, so that neither a drift in
a shared machine's load nor "always first" / "always after X" favours anyone. A contender's figure is the
median over rounds, with the spread (min, max), the number of rounds, the clock and what the clock includes,
which only the caller knows and must say (DESIGN.md rule 12).

Two ways in:
- `time_interleaved`: the helper holds the clock around each call (seconds per call).
- `interleave_figures`: each contender measures itself and returns its figure (img/s over the steady part of
  a run, where only the contender knows which part that is); the helper only schedules and summarises.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# wall: elapsed time, waiting for a core included. cpu: this process's CPU time (all its threads summed), so
# time spent waiting on a shared machine is not counted; it cannot see a CUDA device's work.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK_NAMES = {"wall": "wall time (time.perf_counter)", "cpu": "process CPU time (time.process_time)"}


@dataclass(frozen=True)
class Timing:
    """One contender's figures over the rounds: seconds per call (unit "s") unless the contender reported
    another figure (e.g. "img/s")."""

    samples: tuple[float, ...]  # one per round, in round order
    clock: str  # a key of CLOCKS
    includes: str  # one line: what the timed region holds
    unit: str = "s"

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def rounds(self) -> int:
        return len(self.samples)


def rotations(names: Sequence[T], rounds: int) -> Iterator[list[T]]:
    """The order of each round: `names` rotated left by the round's index (a, b, c; b, c, a; c, a, b; ...)."""
    for r in range(rounds):
        k = r % len(names) if names else 0
        yield [*names[k:], *names[:k]]


def interleave(contenders: Mapping[str, Callable[[], T]], rounds: int, warmup: int = 1) -> dict[str, list[T]]:
    """Call each contender `warmup` times (in the given order), then `rounds` rotated rounds; return what each
    call of each round returned, per contender, in round order."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    got: dict[str, list[T]] = {name: [] for name in contenders}
    for order in rotations(list(contenders), rounds):
        for name in order:
            got[name].append(contenders[name]())
    return got


def interleave_figures(
    contenders: Mapping[str, Callable[[], float]],
    rounds: int,
    *,
    clock: str,
    includes: str,
    unit: str,
    warmup: int = 1,
) -> dict[str, Timing]:
    """For contenders that measure themselves: each returns its figure (in `unit`, read with `clock`)."""
    _check_clock(clock)
    got = interleave(contenders, rounds, warmup)
    return {name: Timing(tuple(v), clock, includes, unit) for name, v in got.items()}


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    includes: str | Mapping[str, str],
    clock: str = "wall",
    warmup: int = 1,
    min_sample_s: float = 0.0,
    sync: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Seconds per call of each fn, read with `clock` around each call. `includes`: one line for all, or one
    per fn (where the timed regions differ, e.g. a variant that prepares something before the clock starts).

    min_sample_s > 0: the last warm-up call also sets how many calls one sample averages, so that a sample
    lasts at least that long (sub-millisecond calls are otherwise at the mercy of the scheduler's time slice).
    sync (e.g. torch.cuda.synchronize) is called before the clock is read, on both sides of a sample."""
    return time_interleaved_by_clock(
        fns, rounds, includes=includes, clocks=(clock,), warmup=warmup, min_sample_s=min_sample_s, sync=sync
    )[clock]


def time_interleaved_by_clock(
    fns: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    includes: str | Mapping[str, str],
    clocks: Sequence[str] = ("wall", "cpu"),
    warmup: int = 1,
    min_sample_s: float = 0.0,
    sync: Callable[[], None] | None = None,
) -> dict[str, dict[str, Timing]]:
    """As time_interleaved, reading several clocks around the same calls: {clock: {name: Timing}}. The first
    clock sets the repetitions of min_sample_s."""
    if not clocks:
        raise ValueError("no clock to read")
    for c in clocks:
        _check_clock(c)
    said = {name: includes if isinstance(includes, str) else includes[name] for name in fns}
    nows = [CLOCKS[c] for c in clocks]  # looked up at call time, so a test can put a fake clock in CLOCKS
    sync = sync or (lambda: None)
    reps = dict.fromkeys(fns, 1)

    def sample(name: str) -> Callable[[], tuple[float, ...]]:
        fn = fns[name]

        def run() -> tuple[float, ...]:
            n = reps[name]
            sync()
            t0 = [now() for now in nows]
            for _ in range(n):
                fn()
            sync()
            return tuple((now() - s) / n for now, s in zip(nows, t0))

        return run

    samplers = {name: sample(name) for name in fns}
    for i in range(warmup):
        for name, run in samplers.items():
            took = run()[0]
            if i == warmup - 1 and min_sample_s > 0:
                reps[name] = max(1, math.ceil(min_sample_s / max(took, 1e-9)))
    got = interleave(samplers, rounds, warmup=0)
    return {
        c: {name: Timing(tuple(s[k] for s in got[name]), c, said[name]) for name in fns} for k, c in enumerate(clocks)
    }


def _check_clock(clock: str) -> None:
    if clock not in CLOCKS:
        from cnnlab.errors import UnknownNameError

        raise UnknownNameError("clock", clock, CLOCKS)


def machine_columns() -> dict[str, str]:
    """The machine columns of every benchmark CSV row (`cnnlab conv bench` and benchmarks/): `cpu`,
    `cpu_flags` (cnnlab.machine.describe()), `torch`, `threads`, `cpus`; read when called, so call it after
    the benchmark set its thread count."""
    import torch

    from cnnlab import machine

    return {
        **machine.describe(),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "cpus": str(os.cpu_count()),
    }


def write_benchmark_csv(path: str | Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """`rows` (dicts; a key missing from a row is an empty cell) with the machine columns last on every row;
    atomic (cnnlab.fileio). A row's own value under a machine column's name is replaced by the machine's."""
    from cnnlab.fileio import write_csv

    machine_cols = machine_columns()
    rows = [{k: v for k, v in r.items() if k not in machine_cols} for r in rows]
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    fields = [*dict.fromkeys(k for r in rows for k in r), *machine_cols]
    write_csv(path, [{**r, **machine_cols} for r in rows], fieldnames=fields)
    return Path(path)
