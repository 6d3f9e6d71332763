"""Time `cnnlab.analysis.analyze` against `torchinfo.summary` on torchvision's ResNet-50 at 224, in one process,
and the analysis of the whole cnnlab zoo.

Timed regions:
- analyze: `analyze(model, (3, 224, 224))` on a real (CPU, float32) torchvision ResNet-50: building the meta
  twin, the counted forward on meta tensors, the report. The model is left untouched.
- torchinfo: `torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)` on the same model: a real CPU
  forward with its hooks (that is how torchinfo works).
- zoo: `analyze(name)` for every name of `cnnlab.list_models()` at its default input size, built on meta.

Usage: python benchmarks/analyzer.py [--runs N] [--threads T] [--csv benchmarks/results/analyzer-HOST.csv]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _times(fn, runs: int) -> list[float]:
    fn()  # warm-up: imports, first-call caches
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _fmt(ts: list[float]) -> str:
    return (
        f"median {statistics.median(ts) * 1e3:8.1f} ms  (min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f}, n={len(ts)})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (torchinfo's forward uses them)")
    p.add_argument("--csv", type=Path, default=None, help="append the medians to this CSV file")
    p.add_argument("--no-zoo", action="store_true")
    args = p.parse_args(argv)

    import torch
    import torchvision

    import cnnlab
    from cnnlab.analysis import analyze

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, python {platform.python_version()}")
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, threads={args.threads}")

    model = torchvision.models.resnet50()
    results: dict[str, float] = {}
    t_an = _times(lambda: analyze(model, (3, 224, 224)), args.runs)
    print(f"analyze   resnet50@224: {_fmt(t_an)}")
    results["analyze_resnet50_s"] = statistics.median(t_an)
    try:
        import torchinfo
    except ImportError:
        print("torchinfo is not installed: no baseline")
    else:
        t_ti = _times(lambda: torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0), args.runs)
        print(f"torchinfo resnet50@224: {_fmt(t_ti)}")
        results["torchinfo_resnet50_s"] = statistics.median(t_ti)
        print(f"speed-up (median torchinfo / median analyze): {statistics.median(t_ti) / statistics.median(t_an):.1f}x")

    if not args.no_zoo:
        names = cnnlab.list_models()
        t0 = time.perf_counter()
        slowest = []
        for name in names:
            t1 = time.perf_counter()
            analyze(name)
            slowest.append((time.perf_counter() - t1, name))
        total = time.perf_counter() - t0
        slowest.sort(reverse=True)
        top = ", ".join(f"{n} {t * 1e3:.0f} ms" for t, n in slowest[:3])
        print(f"zoo: {len(names)} models in {total:.2f} s (one run; slowest: {top})")
        results["zoo_s"] = total
        results["zoo_models"] = len(names)

    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        new = not args.csv.exists()
        line = ",".join(f"{v}" for v in results.values())
        text = (args.csv.read_text() if not new else ",".join(results) + "\n") + line + "\n"
        fd, tmp = tempfile.mkstemp(dir=args.csv.parent)  # atomic: a reader never sees half a file
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, args.csv)
        print(f"appended to {args.csv} ({socket.gethostname()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
