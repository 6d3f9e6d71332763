"""Time direct (F.conv2d), im2col, FFT and Winograd against each other in one process, and answer:

1. Is our im2col within 2x of F.conv2d?
2. Is Winograd F(4x4,3x3) at least 1.5x faster than our im2col for 128+ channels, and where does it lose?
3. From which kernel size does FFT beat F.conv2d at 64x64 and larger?

    .venv/bin/python benchmarks/conv_algorithms.py [--grid small|full] [--rounds 5] [--threads 1]
        [--clock wall|cpu] [--default-allocator]

Writes benchmarks/results/conv_algorithms-<cpu tag>.csv (every row with the cpu, cpu_flags, torch, threads
columns; see benchmarks/_machine.py) and the crossover plot conv_algorithms-<cpu tag>.png next to it. The
timing protocol (what the clock includes, interleaving, medians) is printed at the start; see
cnnlab.convlab.bench.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import _machine

from cnnlab.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    print(_machine.cpu_line(), flush=True)
    if "--default-allocator" in argv:
        argv.remove("--default-allocator")
    else:  # steady-state allocator: see cnnlab.convlab.bench.keep_freed_memory
        argv.append("--keep-freed-memory")
    given = {a.split("=", 1)[0] for a in argv}
    if "--out" not in given:
        argv += ["--out", str(_machine.result_path("conv_algorithms"))]
    if "--plot" not in given:
        argv += ["--plot", str(_machine.result_path("conv_algorithms", "png"))]
    return cli_main(["conv", "bench", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
