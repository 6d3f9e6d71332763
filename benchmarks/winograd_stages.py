"""Where Winograd F(4x4,3x3)'s time goes, and the layout choices in cnnlab/convlab/winograd.py, measured.

    .venv/bin/python benchmarks/winograd_stages.py [--rounds 21] [--sizes 128:14,256:14] [--csv FILE]

1. Stages of one call (N=4, C=K, 3x3 pad 1): padding into channels-last, input transform (tile gather + two
   small GEMMs), filter transform, element-wise GEMMs, output transform (two small GEMMs + stitching), and
   the final crop to NCHW; against the whole call.
2. Tile gather and stitching: the copies winograd.py does through channels-last, against the same copies
   straight from/to NCHW (the layout session 1 used).
3. The element-wise GEMMs reading U's (C, K) slices as a transposed view against a contiguous U, and the
   copy that makes U contiguous: why REORDER_FILTERS_BYTES is where it is.

Clock: process CPU time with one torch thread (waiting for a core is not counted), glibc told to reuse freed
memory (as benchmarks/conv_algorithms.py). Each variant is warmed up, then timed in interleaved rounds; the
figure is the median in ms. Inputs are made before the clock starts.

Writes benchmarks/results/winograd_stages-<cpu tag>.csv (one row per part, configuration and variant, with the
cpu, cpu_flags, torch, threads columns; see benchmarks/_machine.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import _machine
import torch

from cnnlab import timing
from cnnlab.convlab import winograd as W
from cnnlab.convlab.bench import keep_freed_memory

INCLUDES = "one call of the named stage or copy; its inputs are made before the clock starts"


def medians(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median ms per call of each variant (cnnlab.timing: warm-up, rotated rounds, process CPU time)."""
    got = timing.time_interleaved(fns, rounds, clock="cpu", includes=INCLUDES)
    return {k: t.median * 1e3 for k, t in got.items()}


def stages(c: int, size: int, rounds: int) -> dict[str, float]:
    n, tile = 4, 4
    x, w = torch.randn(n, c, size, size), torch.randn(c, c, 3, 3)
    A_t, GG, B_t = W.matrices(tile, x.dtype, x.device)
    nh = nw = -(-size // tile)
    pad = (1, 1 + nh * tile - size, 1, 1 + nw * tile - size)
    xp = W.padded_channels_last(x, pad)
    V, U = W.input_transform(xp, B_t, tile, 1), W.weight_transform(w, GG, 1)
    M = W.elementwise_stage(V, U)
    y = W.output_transform(M, A_t, n, nh, nw)
    return medians(
        {
            "whole call": lambda: W.conv2d_winograd(x, w, padding=1, tile=tile),
            "pad to channels-last": lambda: W.padded_channels_last(x, pad),
            "input transform": lambda: W.input_transform(xp, B_t, tile, 1),
            "filter transform": lambda: W.weight_transform(w, GG, 1),
            "element-wise GEMMs": lambda: W.elementwise_stage(V, U),
            "output transform": lambda: W.output_transform(M, A_t, n, nh, nw),
            "crop to NCHW": lambda: y[:, :size, :size].permute(0, 3, 1, 2).contiguous(),
        },
        rounds,
    )


def copies(c: int, size: int, rounds: int) -> dict[str, float]:
    n, m, a = 4, 4, 6
    nh = -(-size // m)
    hp = nh * m + 2
    x = torch.randn(n, c, hp, hp)
    x_cl = x.permute(0, 2, 3, 1).contiguous()  # (N, Hp, Wp, C)
    from_nchw = x.unfold(2, a, m).unfold(3, a, m)  # (N, C, nH, nW, a, a)
    from_nhwc = x_cl.unfold(1, a, m).unfold(2, a, m)  # (N, nH, nW, C, a, a)
    tiles = torch.randn(m, m, n, nh, nh, c)  # output tiles as the output transform leaves them
    return medians(
        {
            "gather from NCHW": lambda: from_nchw.permute(4, 5, 0, 2, 3, 1).contiguous(),
            "gather from channels-last": lambda: from_nhwc.permute(4, 5, 0, 1, 2, 3).contiguous(),
            "stitch to NCHW": lambda: tiles.permute(2, 5, 3, 0, 4, 1).reshape(n, c, nh * m, nh * m),
            "stitch to channels-last + NCHW copy": lambda: (
                tiles.permute(2, 3, 0, 4, 1, 5).reshape(n, nh * m, nh * m, c).permute(0, 3, 1, 2).contiguous()
            ),
        },
        rounds,
    )


def u_layout(c: int, rounds: int) -> dict[str, float]:
    t = 64  # tiles: N=4 images of 14x14 at F(4x4)
    V = torch.randn(36, 1, t, c)
    u_plain = torch.randn(36, 1, c, c)
    u_view = torch.randn(36, 1, c, c).transpose(2, 3)
    w = torch.randn(c, c, 3, 3)
    return medians(
        {
            "U contiguous": lambda: torch.matmul(V, u_plain),
            "U transposed view": lambda: torch.matmul(V, u_view),
            "reorder the filters": lambda: w.reshape(1, c, c, 9).transpose(1, 2).contiguous(),
        },
        rounds,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--sizes", default="128:14,256:14", help="C:size pairs for parts 1 and 2")
    p.add_argument("--u-channels", default="64,128,192,256,384", help="C=K values for part 3")
    p.add_argument("--csv", type=Path, default=None, help="CSV (default results/winograd_stages-<cpu tag>.csv)")
    args = p.parse_args(argv)
    print(_machine.cpu_line(), flush=True)
    torch.set_num_threads(1)
    kept = keep_freed_memory()
    rows: list[dict] = []

    def record(part: str, c: int, size: int, res: dict[str, float]) -> None:
        rows.extend(
            {"part": part, "n": 4, "c": c, "k_out": c, "size": size, "variant": k, "median_ms": f"{v:.4f}",
             "rounds": args.rounds, "clock": "cpu"}
            for k, v in res.items()
        )  # fmt: skip

    print(f"torch {torch.__version__}, 1 thread, CPU-time clock, {args.rounds} interleaved rounds, medians in ms; "
          f"glibc reuses freed memory: {kept}")  # fmt: skip
    for pair in args.sizes.split(","):
        c, size = (int(v) for v in pair.split(":"))
        print(f"\n1. stages, N=4 C=K={c} {size}x{size}")
        res = stages(c, size, args.rounds)
        record("stages", c, size, res)
        parts = sum(v for k, v in res.items() if k != "whole call")
        for k, v in res.items():
            print(f"   {k:<24} {v:7.3f}")
        print(f"   {'sum of the stages':<24} {parts:7.3f}")
        print(f"2. copies, N=4 C={c} {size}x{size}")
        res = copies(c, size, args.rounds)
        record("copies", c, size, res)
        for k, v in res.items():
            print(f"   {k:<36} {v:7.3f}")
    print("\n3. element-wise GEMMs (36 x (64 x C) @ (C x C)), U's layout")
    for c in (int(v) for v in args.u_channels.split(",")):
        r = u_layout(c, args.rounds)
        record("u_layout", c, 14, r)  # the GEMMs of N=4 14x14 maps (64 tiles), as u_layout sets them up
        slower = r["U transposed view"] / r["U contiguous"] - 1
        print(f"   C=K={c:<4} contiguous {r['U contiguous']:7.3f}  transposed view {r['U transposed view']:7.3f} "
              f"({slower:+.0%})  reorder {r['reorder the filters']:6.3f}  "
              f"U is {c * c * 4 / 1024:.0f} KiB a slice")  # fmt: skip

    print(f"\nwrote {_machine.write_csv(args.csv or _machine.result_path('winograd_stages'), rows)}")


if __name__ == "__main__":
    main()
