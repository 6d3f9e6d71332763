"""`cnnlab conv check|bench`: the convolution lab's correctness table and timing grid."""

from __future__ import annotations

import argparse

HELP = "convolution algorithms (direct, im2col, FFT, Winograd): check accuracy, time them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="max|err|/max|ref| of every algorithm vs float64, per dtype")
    check.add_argument("--dtypes", default="float32,float16,bfloat16", help="comma-separated dtypes")
    bench = sub.add_parser("bench", help="time the algorithms over a grid and draw the crossover plot")
    bench.add_argument("--grid", default="small", help="small (a few minutes), full (tens of minutes) or tiny")
    bench.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per configuration")
    bench.add_argument(
        "--clock", default="wall", help="wall, or cpu (process CPU time: robust on a shared machine, CPU only)"
    )
    bench.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    bench.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc: reuse freed memory instead of page-faulting fresh buffers in every call (Linux)",
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")
    bench.add_argument("--out", default=None, help="CSV of every timed row")
    bench.add_argument("--plot", default=None, help="PNG of which algorithm wins where")


def run(args: argparse.Namespace) -> int:
    from cnnlab.convlab import bench

    if args.action == "check":
        rows = bench.check_table(tuple(d.strip() for d in args.dtypes.split(",") if d.strip()))
        print("max|err| / max|ref| vs float64 (reference from the same rounded inputs); N=2 C=64 K=32 20x20 3x3 pad 1")
        print(f"{'dtype':<9} {'algorithm':<10} {'rel_error':>10} {'tolerance':>10}  status")
        for r in rows:
            tol = f"{r['tolerance']:.0e}" if r["tolerance"] is not None else "-"
            print(f"{r['dtype']:<9} {r['algorithm']:<10} {r['rel_error']:>10.2e} {tol:>10}  {r['status']}")
        return 1 if any(r["status"] == "FAIL" for r in rows) else 0

    import torch

    if args.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {args.rounds}")
    threads_before = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return _bench(args, bench)
    finally:
        torch.set_num_threads(threads_before)  # callers in the same process keep their setting


def _bench(args: argparse.Namespace, bench) -> int:  # noqa: ANN001 (the bench module)
    configs = bench.grid(args.grid)
    kept = bench.keep_freed_memory() if args.keep_freed_memory else False
    env = bench.environment()
    print(f"torch {env['torch']}, {env['threads']} threads, {env['machine']}, python {env['python']}")
    print(bench.__doc__.split("\n\n")[1].replace("\n", " "))
    print(
        f"{len(configs)} configurations x {args.rounds} interleaved rounds (median, float32, CPU), clock: {args.clock}"
    )
    print(
        "allocator: glibc keeps freed memory (no mmap, no trim)"
        if kept
        else "allocator: default (large buffers are fresh, page-faulting memory on every call)"
    )
    from cnnlab.train.progress import Progress

    # A terminal also gets a bar over the configurations (the small grid takes minutes); a log only the rows.
    with Progress(len(configs), "conv bench", summary=False) as bar:
        say = bar.printer(print)

        def row(line: str) -> None:
            say(line)
            bar.update(0, force=True)

        rows = bench.bench(configs, rounds=args.rounds, progress=row, clock=args.clock)
    print("\nFindings:")
    for line in bench.findings(rows):
        print(line)
    if args.out:
        print(f"wrote {bench.write_csv(rows, args.out)}")
    if args.plot:
        print(f"wrote {bench.plot_crossover(rows, args.plot)}")
    return 0
