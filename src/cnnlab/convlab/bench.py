"""The correctness table and the timing grid behind `cnnlab conv check|bench` and benchmarks/conv_algorithms.py.

Timing protocol: one process; every algorithm of a configuration is warmed up once, then timed in
interleaved rounds (round r runs each algorithm once, in an order rotated per round, so slow drifts of a
shared machine hit all of them alike; a sample repeats sub-5 ms calls and reports the time per call);
the figure is the median over rounds, with the min-max spread. The clock covers one full call of the
function: argument checks, padding, transforms (Winograd's filter transform included: nothing is cached
between calls), the GEMMs and the output. It excludes creating the inputs. The one exception is named so:
"winograd4+cached" times inference with the filters transformed once beforehand (transform_filters, as
convlab.Conv2d(cache_filters=True) does), so its clock excludes the filter transform. GFLOP/s are counted as
direct convolution's MACs x 2 for every algorithm, so they compare time.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab import timing
from cnnlab.convlab._common import geometry
from cnnlab.convlab.module import ALGORITHMS, conv2d
from cnnlab.convlab.winograd import WinogradPrecisionWarning, conv2d_winograd, transform_filters
from cnnlab.convlab.workspace import workspace_bytes
from cnnlab.fileio import atomic_path

# The project's bounds on max|err| / max|ref| against float64 on random inputs, looser as the Winograd tile grows
# (its transforms enlarge values: Lavin & Gray 2015, arXiv:1509.09308). bfloat16 has no bound: Winograd at
# tile 4 and 6 is expected to miss by several percent and warns.
TOLERANCES = {
    torch.float32: {
        "direct": 1e-5,
        "im2col": 1e-5,
        "fft": 1e-5,
        "winograd2": 1e-5,
        "winograd4": 1e-4,
        "winograd6": 2e-4,
    },
    torch.float16: {
        "direct": 3e-3,
        "im2col": 3e-3,
        "fft": 3e-3,
        "winograd2": 3e-3,
        "winograd4": 3e-2,
        "winograd6": 5e-2,
    },
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref|."""
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


def check_table(
    dtypes: Iterable[str] = ("float32", "float16", "bfloat16"),
    algorithms: Iterable[str] = ALGORITHMS,
    shape: tuple[int, int, int, int] = (2, 64, 20, 20),
    out_channels: int = 32,
    seed: int = 0,
) -> list[dict]:
    """Each algorithm's error against a float64 reference computed from the same rounded inputs."""
    gen = torch.Generator().manual_seed(seed)
    x64 = torch.randn(shape, generator=gen, dtype=torch.float64)
    w64 = torch.randn(out_channels, shape[1], 3, 3, generator=gen, dtype=torch.float64) / (3 * shape[1] ** 0.5)
    rows = []
    for dname in dtypes:
        if dname not in DTYPES:
            from cnnlab.errors import UnknownNameError

            raise UnknownNameError("dtype", dname, DTYPES)
        dtype = DTYPES[dname]
        x, w = x64.to(dtype), w64.to(dtype)
        ref = F.conv2d(x.double(), w.double(), padding=1)
        for alg in algorithms:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", WinogradPrecisionWarning)
                err = relative_error(conv2d(x, w, padding=1, algorithm=alg), ref)
            tol = TOLERANCES.get(dtype, {}).get(alg)
            warned = any(issubclass(c.category, WinogradPrecisionWarning) for c in caught)
            status = "warns" if warned else ("-" if tol is None else ("ok" if err <= tol else "FAIL"))
            rows.append({"dtype": dname, "algorithm": alg, "rel_error": err, "tolerance": tol, "status": status})
    return rows


@dataclass(frozen=True)
class Config:
    """One convolution to time: (N, C, H=W), K output channels, k x k kernel, 'same' padding, stride 1."""

    study: str  # which question this row answers: "im2col", "winograd", "fft"
    n: int
    c: int
    size: int
    k_out: int
    kernel: int
    algorithms: tuple[str, ...]


WINOGRAD_STUDY = ("torch", "im2col", "winograd2", "winograd4", "winograd6", "winograd4+cached")
CACHED = "+cached"


def _timed_call(alg: str, x: torch.Tensor, w: torch.Tensor, pad: int) -> Callable[[], object]:
    if alg.endswith(CACHED):  # inference: the filters were transformed before the clock started
        tile = int(alg[len("winograd") : -len(CACHED)])
        u = transform_filters(w, tile)
        return functools.partial(conv2d_winograd, x, w, None, 1, pad, 1, 1, tile, transformed_weight=u)
    return functools.partial(conv2d, x, w, None, 1, pad, 1, 1, alg)


def grid(name: str) -> list[Config]:
    """Configurations per study. "small" keeps the default run to a few minutes on 1-2 CPU cores;
    "full" sweeps kernel 1-31, channels 3-512, sizes 7-224 and batches 1-32 (tens of minutes);
    "tiny" is for tests."""
    if name == "tiny":
        return [
            Config("im2col", 1, 8, 12, 8, 3, ("torch", "im2col")),
            Config("winograd", 1, 16, 12, 16, 3, ("im2col", "winograd4", "winograd4+cached")),
            Config("fft", 1, 4, 16, 4, 3, ("torch", "fft")),
            Config("fft", 1, 4, 16, 4, 9, ("torch", "fft")),
        ]
    rows: list[Config] = []
    if name == "small":
        for n, c, size in [(1, 3, 224), (8, 64, 56), (8, 128, 28), (8, 256, 14), (8, 512, 7)]:
            rows.append(Config("im2col", n, c, size, max(c, 64), 3, ("torch", "im2col")))
        for c in (32, 64, 128, 256):
            for size in (14, 28, 56):
                rows.append(Config("winograd", 4, c, size, c, 3, WINOGRAD_STUDY))
        for size in (64, 128):
            for k in (3, 5, 7, 9, 11, 13, 15, 17, 21, 25, 31):
                rows.append(Config("fft", 1, 16, size, 16, k, ("torch", "fft")))
        return rows
    if name == "full":
        for n, c, size in [(1, 3, 224), (32, 3, 32), (8, 64, 56), (8, 128, 28), (8, 256, 14), (8, 512, 7), (1, 512, 7)]:
            for k in (1, 3, 5):
                rows.append(Config("im2col", n, c, size, max(c, 64), k, ("torch", "im2col")))
        for n in (1, 8):
            for c in (16, 32, 64, 128, 256, 512):
                for size in (7, 14, 28, 56):
                    rows.append(Config("winograd", n, c, size, c, 3, WINOGRAD_STUDY))
        for size in (64, 128, 224):
            for c in (3, 16, 64):
                for k in range(1, 32, 2):
                    rows.append(Config("fft", 1, c, size, max(c, 16), k, ("torch", "fft")))
        return rows
    from cnnlab.errors import UnknownNameError

    raise UnknownNameError("benchmark grid", name, ("small", "full", "tiny"))


# What the clock holds (cnnlab.timing's `includes`), as the module docstring says.
INCLUDES = "one full call: argument checks, padding, transforms (filters too), GEMMs, output; not making the inputs"
INCLUDES_CACHED = "one call with the filters transformed beforehand: as the others, minus the filter transform"


def _sync(device: torch.device) -> Callable[[], None] | None:
    return functools.partial(torch.cuda.synchronize, device) if device.type == "cuda" else None


def bench(
    configs: Iterable[Config],
    rounds: int = 5,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Callable[[str], None] | None = None,
    clock: str = "wall",
) -> list[dict]:
    """Time each config's algorithms (cnnlab.timing.time_interleaved: one warm-up call each, which also sets
    how many calls a sample averages so that it lasts >= 5 ms, then `rounds` rotated rounds); one row per
    (config, algorithm).

    clock="cpu" reads the process's CPU time instead of the wall clock: on a machine shared with other
    jobs it does not count the time this process waits for a core (with one thread it is the compute time;
    with several it sums them, so compare algorithms at the same thread count only)."""
    device = torch.device(device)
    if clock == "cpu" and device.type != "cpu":
        raise ValueError("clock='cpu' measures host CPU time and cannot time a CUDA device; use clock='wall'")
    rows = []
    for cfg in configs:
        x = torch.randn(cfg.n, cfg.c, cfg.size, cfg.size, device=device, dtype=dtype)
        w = torch.randn(cfg.k_out, cfg.c, cfg.kernel, cfg.kernel, device=device, dtype=dtype)
        # "same" for odd kernels; F.conv2d's "same" with even kernels would copy the input, which is not the
        # thing measured here.
        pad = cfg.kernel // 2
        fns = {a: _timed_call(a, x, w, pad) for a in cfg.algorithms}
        includes = {a: INCLUDES_CACHED if a.endswith(CACHED) else INCLUDES for a in fns}
        with torch.no_grad():
            times = timing.time_interleaved(
                fns, rounds, includes=includes, clock=clock, min_sample_s=0.005, sync=_sync(device)
            )
        macs = geometry(x.shape, w.shape, 1, pad).macs
        for alg, t in times.items():
            ws_alg = alg.removesuffix(CACHED)  # cached: U is still held, the reordered filters are not (small)
            ws = None if alg == "torch" else workspace_bytes(ws_alg, x.shape, w.shape, padding=pad, dtype=dtype)
            rows.append(
                {
                    **{k: v for k, v in asdict(cfg).items() if k != "algorithms"},
                    "algorithm": alg,
                    "median_ms": t.median * 1e3,
                    "min_ms": t.min * 1e3,
                    "max_ms": t.max * 1e3,
                    "rounds": t.rounds,
                    "clock": t.clock,
                    "gflops": 2 * macs / t.median / 1e9,
                    "workspace_bytes": ws,
                }
            )
        if progress:
            best = min(times, key=lambda a: times[a].median)
            progress(
                f"{cfg.study:8} N={cfg.n:<2} C={cfg.c:<3} K={cfg.k_out:<3} {cfg.size:>3}x{cfg.size:<3} "
                f"k={cfg.kernel:<2} "
                + " ".join(f"{a}={t.median * 1e3:.2f}ms" for a, t in times.items())
                + f"  best={best}"
            )
    return rows


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory in the process (no mmap for big blocks, no trimming).

    PyTorch's CPU allocator does not cache: every large intermediate is a fresh mmap and its first touch
    page-faults, which on this kind of machine put a quarter of the benchmark's CPU time in the kernel and
    punished whichever algorithm ran after a different-sized one. With this setting buffers are reused, as
    a caching allocator (PyTorch's on CUDA, or jemalloc) would. Returns False where it does not apply."""
    import ctypes
    import ctypes.util

    if platform.system() != "Linux" or "glibc" not in " ".join(platform.libc_ver()):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_mmap_max = -1, -4  # from <malloc.h>
    ok_mmap = libc.mallopt(m_mmap_max, 0)  # never mmap: big blocks come from the heap and are reused
    ok_trim = libc.mallopt(m_trim_threshold, 2**31 - 1)  # and the heap's top is not given back
    return bool(ok_mmap and ok_trim)


def environment() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "python": platform.python_version(),
    }


def _median(rows: list[dict], alg: str, **match: object) -> float | None:
    for r in rows:
        if r["algorithm"] == alg and all(r[k] == v for k, v in match.items()):
            return r["median_ms"]
    return None


def findings(rows: list[dict]) -> list[str]:
    """The three answers the issue asks for, computed from the rows."""
    out: list[str] = []
    ratios = []
    for r in rows:
        if r["study"] == "im2col" and r["algorithm"] == "im2col":
            t = _median(rows, "torch", study="im2col", n=r["n"], c=r["c"], size=r["size"], kernel=r["kernel"])
            ratios.append((r["median_ms"] / t, r))
    if ratios:
        worst, wr = max(ratios, key=lambda p: p[0])
        ok = "within" if worst <= 2 else "NOT within"
        out.append(
            f"im2col / F.conv2d time: median {statistics.median(p[0] for p in ratios):.2f}x, worst {worst:.2f}x "
            f"(N={wr['n']} C={wr['c']} {wr['size']}x{wr['size']} k={wr['kernel']}): {ok} 2x"
        )
    for alg, what in (("winograd4", "per call"), ("winograd4" + CACHED, "filters transformed once (inference)")):
        out += _winograd_findings(rows, alg, what)
    for size in sorted({r["size"] for r in rows if r["study"] == "fft"}):
        for c in sorted({r["c"] for r in rows if r["study"] == "fft" and r["size"] == size}):
            ks = sorted({r["kernel"] for r in rows if r["study"] == "fft" and r["size"] == size and r["c"] == c})
            faster = [
                k
                for k in ks
                if _median(rows, "fft", study="fft", size=size, c=c, kernel=k)
                < _median(rows, "torch", study="fft", size=size, c=c, kernel=k)
            ]
            first = faster[0] if faster else None
            # The crossover: the smallest kernel from which FFT stays faster for every larger kernel tried.
            cross = next((k for k in ks if all(j in faster for j in ks if j >= k)), None)
            desc = f"first at k = {first}, at every k >= {cross}" if cross is not None else "never in the sizes tried"
            out.append(f"FFT beats F.conv2d at {size}x{size}, C=K={c}: {desc} (kernels tried {ks[0]}-{ks[-1]})")
    return out


def _winograd_findings(rows: list[dict], alg: str, what: str) -> list[str]:
    out: list[str] = []
    wins, losses = [], []
    for r in rows:
        if r["study"] == "winograd" and r["algorithm"] == alg:
            key = dict(study="winograd", n=r["n"], c=r["c"], size=r["size"])
            speedup = _median(rows, "im2col", **key) / r["median_ms"]
            vs_torch = _median(rows, "torch", **key) / r["median_ms"] if _median(rows, "torch", **key) else None
            (wins if speedup >= 1 else losses).append((r["c"], r["size"], r["n"], speedup, vs_torch))
    big = [s for s in wins + losses if s[0] >= 128]
    if big:
        lo, hi = min(b[3] for b in big), max(b[3] for b in big)
        met = sum(b[3] >= 1.5 for b in big)
        out.append(
            f"Winograd F(4x4,3x3), {what}, vs our im2col at >=128 channels: {lo:.2f}x to {hi:.2f}x "
            f"(>= 1.5x in {met} of {len(big)} configurations)"
        )
        short = [f"C={b[0]} {b[1]}x{b[1]} ({b[3]:.2f}x)" for b in sorted(big) if b[3] < 1.5]
        if short:
            out.append("  under 1.5x at: " + ", ".join(short))
    for c, size, n, s, vt in sorted(wins + losses):
        vt_s = f", {vt:.2f}x vs F.conv2d" if vt else ""
        out.append(f"  C=K={c:<3} {size:>2}x{size:<2} N={n}: {alg} {s:.2f}x vs im2col{vt_s}")
    if losses:
        out.append(
            f"  {alg} loses to im2col at: " + ", ".join(f"C={c} {size}x{size}" for c, size, *_ in sorted(losses))
        )
    return out


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Every row plus the machine it ran on (`cpu`, `cpu_flags`, `torch`, `threads`, `cpus`: the columns of
    every benchmarks/ CSV, cnnlab.timing.machine_columns; call this with the benchmark's thread count still
    set); atomic (cnnlab.fileio)."""
    return timing.write_benchmark_csv(path, rows)


def plot_crossover(rows: list[dict], path: str | Path) -> Path:
    """Which algorithm wins where: FFT vs F.conv2d over kernel size, Winograd vs im2col over channels,
    im2col's cost relative to F.conv2d."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for size in sorted({r["size"] for r in rows if r["study"] == "fft"}):
        for c in sorted({r["c"] for r in rows if r["study"] == "fft" and r["size"] == size}):
            for alg, style in (("torch", "-o"), ("fft", "--s")):
                pts = sorted(
                    (r["kernel"], r["median_ms"])
                    for r in rows
                    if r["study"] == "fft" and r["size"] == size and r["c"] == c and r["algorithm"] == alg
                )
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{alg} {size}x{size} C={c}", markersize=3)
    ax.set(xlabel="kernel size k", ylabel="median ms", yscale="log", title="FFT vs F.conv2d (direct)")
    ax.legend(fontsize=7)
    ax = axes[1]
    for alg, style, tag in (("winograd4", "-o", ""), ("winograd4" + CACHED, "--^", " filters cached")):
        for size in sorted({r["size"] for r in rows if r["study"] == "winograd"}):
            pts = []
            for r in rows:
                if r["study"] == "winograd" and r["size"] == size and r["algorithm"] == alg:
                    base = _median(rows, "im2col", study="winograd", n=r["n"], c=r["c"], size=size)
                    pts.append((r["c"], base / r["median_ms"]))
            if pts:
                ax.plot(*zip(*sorted(pts)), style, label=f"{size}x{size}{tag}", markersize=3)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.axhline(1.5, color="gray", lw=0.8, ls=":")
    chans = sorted({r["c"] for r in rows if r["study"] == "winograd"})
    ax.set(
        xlabel="channels C = K",
        ylabel="im2col time / winograd4 time",
        xscale="log",
        title="Winograd F(4x4,3x3) vs im2col",
    )
    ax.set_xticks(chans, [str(c) for c in chans])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    ax = axes[2]
    labels, ratios = [], []
    for r in rows:
        if r["study"] == "im2col" and r["algorithm"] == "im2col":
            t = _median(rows, "torch", study="im2col", n=r["n"], c=r["c"], size=r["size"], kernel=r["kernel"])
            labels.append(f"N{r['n']} C{r['c']}\n{r['size']}² k{r['kernel']}")
            ratios.append(r["median_ms"] / t)
    ax.bar(range(len(ratios)), ratios)
    ax.set_xticks(range(len(ratios)), labels, fontsize=6)
    ax.axhline(2.0, color="red", lw=0.8, ls=":")
    ax.set(ylabel="im2col time / F.conv2d time", title="im2col's price")
    env = environment()
    fig.suptitle(f"torch {env['torch']}, {env['threads']} threads, {env['machine']}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path
