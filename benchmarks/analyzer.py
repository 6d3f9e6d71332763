"""Time `cnnlab.analysis.analyze` against `torchinfo.summary` on torchvision's ResNet-50 at 224, in one process,
and the analysis of the whole cnnlab zoo.

Timed regions:
- analyze: `analyze(model, (3, 224, 224))` on a real (CPU, float32) torchvision ResNet-50: building the meta
  twin, the counted forward on meta tensors, the report. The model is left untouched. The training-memory
  estimate needs a second forward with autograd recording, run only when first read: it is timed apart as
  "analyze + training_bytes" (`analyze(model, (3, 224, 224)).training_bytes`).
- torchinfo: `torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)` on the same model: a real CPU
  forward with its hooks (that is how torchinfo works).
The timed functions take turns run by run (the same load falls on each).
- zoo: `analyze(name)` for every name of `cnnlab.list_models()` at its default input size, built on meta.

Writes benchmarks/results/analyzer-<cpu tag>.csv (one row of medians and the cpu, cpu_flags, torch, threads
columns; `--csv` to choose another path; see benchmarks/_machine.py).

Usage: python benchmarks/analyzer.py [--runs N] [--threads T] [--csv FILE] [--no-zoo]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import _machine

from cnnlab.timing import Timing, time_interleaved_by_clock


def _times(fns: dict[str, tuple[Callable[[], object], str]], runs: int) -> dict[str, tuple[Timing, Timing]]:
    """(wall, CPU of this process) seconds per run of each function (name -> (fn, what its clock includes)),
    both clocks read around the same calls; CPU time is the fairer figure on a shared machine. The functions
    take turns run by run (cnnlab.timing: one warm-up call each for imports and first-call caches, then
    rounds in rotated order), so that a change in the machine's load (other jobs) falls on all of them alike
    and their ratio stays meaningful."""
    got = time_interleaved_by_clock(
        {k: fn for k, (fn, _) in fns.items()},
        runs,
        includes={k: what for k, (_, what) in fns.items()},
        clocks=("wall", "cpu"),
    )
    return {k: (got["wall"][k], got["cpu"][k]) for k in fns}


def _fmt(ts: tuple[Timing, Timing]) -> str:
    wall, cpu = ts
    return (
        f"wall median {wall.median * 1e3:7.1f} ms (min {wall.min * 1e3:.1f}, max {wall.max * 1e3:.1f}),"
        f" cpu median {cpu.median * 1e3:7.1f} ms, n={wall.rounds}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (torchinfo's forward uses them)")
    p.add_argument("--csv", type=Path, default=None, help="CSV (default results/analyzer-<cpu tag>.csv)")
    p.add_argument("--no-zoo", action="store_true")
    args = p.parse_args(argv)
    print(_machine.cpu_line(), flush=True)

    import torch
    import torchvision

    import cnnlab
    from cnnlab.analysis import analyze

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, python {platform.python_version()}, "
        f"threads={torch.get_num_threads()}"
    )

    model = torchvision.models.resnet50()
    results: dict[str, float] = {}
    try:
        import torchinfo
    except ImportError:
        torchinfo = None
        print("torchinfo is not installed: no baseline")
    fns = {
        "analyze": (
            lambda: analyze(model, (3, 224, 224)),
            "analyze(resnet50, (3, 224, 224)): meta twin, counted forward on meta tensors, report",
        ),
        "training": (
            lambda: analyze(model, (3, 224, 224)).training_bytes,
            "as analyze, plus training_bytes: a second meta forward with autograd recording",
        ),
    }
    if torchinfo is not None:
        fns["torchinfo"] = (
            lambda: torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0),
            "torchinfo.summary(resnet50, (1, 3, 224, 224)): a real CPU float32 forward with its hooks",
        )
    timed = _times(fns, args.runs)
    t_an = timed["analyze"]
    print(f"analyze   resnet50@224: {_fmt(t_an)}")
    results["analyze_resnet50_s"] = t_an[0].median
    results["analyze_resnet50_cpu_s"] = t_an[1].median
    t_tr = timed["training"]
    print(f"analyze + training_bytes: {_fmt(t_tr)}")
    results["analyze_training_resnet50_cpu_s"] = t_tr[1].median
    if torchinfo is not None:
        t_ti = timed["torchinfo"]
        print(f"torchinfo resnet50@224: {_fmt(t_ti)}")
        results["torchinfo_resnet50_s"] = t_ti[0].median
        results["torchinfo_resnet50_cpu_s"] = t_ti[1].median
        wall = t_ti[0].median / t_an[0].median
        cpu = t_ti[1].median / t_an[1].median
        print(f"speed-up (median torchinfo / median analyze): wall {wall:.1f}x, cpu {cpu:.1f}x")
        results["speedup_cpu"] = round(cpu, 2)
        full = t_ti[1].median / t_tr[1].median
        print(f"speed-up with training_bytes too: cpu {full:.1f}x")

    if not args.no_zoo:
        names = cnnlab.list_models()
        t0, c0 = time.perf_counter(), time.process_time()
        slowest = []
        for name in names:
            t1 = time.perf_counter()
            analyze(name)
            slowest.append((time.perf_counter() - t1, name))
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        slowest.sort(reverse=True)
        top = ", ".join(f"{n} {t * 1e3:.0f} ms" for t, n in slowest[:3])
        print(f"zoo: {len(names)} models in {total:.2f} s wall, {total_cpu:.2f} s cpu (one run; slowest: {top})")
        print("    (each: build the model on meta + analyze at its default input size)")
        results["zoo_s"] = total
        results["zoo_cpu_s"] = total_cpu
        results["zoo_models"] = len(names)

    out = args.csv or _machine.result_path("analyzer")
    print(f"written to {_machine.write_csv(out, [{'runs': args.runs, **results}])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
