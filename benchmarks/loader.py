"""cnnlab's loader against the pipeline a user would otherwise write, in the same run.

    .venv/bin/python benchmarks/loader.py [--data ../shared/data/cifar10.npz] [--runs 5] [--batches 20]

Measures (medians over --runs, each run a pass over --batches batches of 512 CIFAR-10 training images):
  cnnlab       data.Loader(ds, 512, augment="flip,crop:4") over the memory-mapped uint8 cache.
               The clock includes: shuffled index draw, uint8 gather, per-sample flip + pad-4 crop, conversion
               to float32 and normalization, i.e. every normalized float batch ready for a model on the CPU.
  torchvision  Dataset of PIL images (Image.fromarray per item) with RandomCrop(32, padding=4),
               RandomHorizontalFlip, ToTensor, Normalize, in a DataLoader(batch_size=512, shuffle=True),
               num_workers 0, 1 and 2 (persistent workers, warmed up: worker start-up is not clocked); the best.
               Runs alternate between the four pipelines, so drifting machine load hits all alike.
               The clock includes: per-image transforms, collation, and the transfer from the workers.
Also: folder-to-cache preprocessing (list + decode JPEGs + write the memory-mapped cache + statistics) in
img/s, and `shapes` generation in img/s at 32 px. Results go to benchmarks/results/loader-<cpu tag>.csv, every
row with the cpu, cpu_flags, torch, threads columns (see benchmarks/_machine.py).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _machine
import numpy as np
import torch

from cnnlab import timing

REPO = Path(__file__).resolve().parents[1]


def _median_spread(xs: list[float]) -> tuple[float, float, float]:
    return statistics.median(xs), min(xs), max(xs)


def _cnnlab_pass(loader, batches: int) -> float:  # noqa: ANN001
    n = 0
    t = time.perf_counter()
    for i, (x, _) in enumerate(loader):
        n += len(x)
        if i + 1 == batches:
            break
    return n / (time.perf_counter() - t)


def _dataloader_pass(dl) -> float:  # noqa: ANN001
    n = 0
    t = time.perf_counter()
    for xb, _ in dl:
        n += len(xb)
    return n / (time.perf_counter() - t)


class _PilDataset(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, transform):  # noqa: ANN001
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):  # noqa: ANN204
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def bench_interleaved(ds, x_nhwc: np.ndarray, y: np.ndarray, batches: int, runs: int) -> dict[str, list[float]]:  # noqa: ANN001
    """Runs alternate between the pipelines (cnnlab.timing.interleave_figures: one warm-up pass each, then
    rounds in an order rotated per round), so a machine whose load drifts slows all of them alike. Each pass
    clocks itself (img/s), counting the images it got."""
    import torchvision.transforms as T

    from cnnlab import data

    loader = data.Loader(ds, batch_size=512, augment="flip,crop:4", shuffle=True, seed=0)
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(ds.mean, ds.std)])
    n_img = batches * 512
    pil = _PilDataset(x_nhwc[:n_img], y[:n_img], tf)
    dls = {
        w: torch.utils.data.DataLoader(pil, batch_size=512, shuffle=True, num_workers=w, persistent_workers=w > 0)
        for w in (0, 1, 2)
    }
    epochs = itertools.count()  # epoch 0 is the warm-up pass, as before the rounds were rotated

    def cnnlab_pass() -> float:
        loader.set_epoch(next(epochs))
        return _cnnlab_pass(loader, batches)

    contenders = {"cnnlab": cnnlab_pass}
    for w, dl in dls.items():
        contenders[f"torchvision_workers{w}"] = lambda dl=dl: _dataloader_pass(dl)
    # The warm-up pass warms caches and starts the workers; it is not counted.
    got = timing.interleave_figures(
        contenders,
        runs,
        clock="wall",
        includes="one pass over the batches: every normalized float batch ready for a model on the CPU",
        unit="img/s",
    )
    return {k: list(t.samples) for k, t in got.items()}


def bench_folder(x_nhwc: np.ndarray, y: np.ndarray, classes, n: int, runs: int) -> list[float]:  # noqa: ANN001
    from PIL import Image

    from cnnlab import data

    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs" / "train"
        for i in range(n):
            d = root / classes[int(y[i])]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x_nhwc[i]).save(d / f"{i:05d}.jpg", quality=75)
        for r in range(runs):
            t = time.perf_counter()
            ds = data.load(f"folder:{root.parent}", cache_dir=Path(tmp) / f"cache{r}", val_fraction=0)
            rates.append(len(ds) / (time.perf_counter() - t))
    return rates


def bench_shapes(runs: int) -> list[float]:
    from cnnlab.data import shapes

    shapes.generate(512, 32)
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        shapes.generate(10_000, 32)
        rates.append(10_000 / (time.perf_counter() - t))
    return rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10.npz"))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batches", type=int, default=20, help="batches of 512 per timed pass")
    p.add_argument("--folder-images", type=int, default=2000)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--csv", default=None, help="CSV path (default benchmarks/results/loader-<cpu tag>.csv)")
    args = p.parse_args(argv)
    print(_machine.cpu_line(), flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.runs < 5:
        print("note: fewer than 5 runs; medians are less stable", file=sys.stderr)

    from cnnlab import data

    path = Path(args.data)
    if not path.is_file():
        print(f"{path} not found; pass --data PATH to cifar10.npz", file=sys.stderr)
        return 2
    print(
        f"torch {torch.__version__}, {platform.platform()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"cnnlab loader vs torchvision DataLoader: CIFAR-10 train from {path}, batch 512, flip + crop:4 + normalize")

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        ds = data.load(f"npz:{path}", split="train", val_fraction=0, cache_dir=cache)
        build_s = time.perf_counter() - t
        print(f"npz -> cache (decode once, not in the loader clocks): {build_s:.2f} s for {len(ds):,} images")
        z = np.load(path, allow_pickle=False)
        x_nhwc, y = z["x_train"], z["y_train"]
        rates = bench_interleaved(ds, x_nhwc, y, args.batches, args.runs)
        rows = []
        med, lo, hi = _median_spread(rates.pop("cnnlab"))
        print(
            f"cnnlab Loader                   median {med:10,.0f} img/s  (min {lo:,.0f}, max {hi:,.0f}, n={args.runs})"
        )
        rows.append(("cnnlab_loader", med, lo, hi, args.runs))
        best_name, best = "", 0.0
        for name, rs in rates.items():
            m, lo, hi = _median_spread(rs)
            print(f"{name:<31} median {m:10,.0f} img/s  (min {lo:,.0f}, max {hi:,.0f}, n={len(rs)})")
            rows.append((name, m, lo, hi, len(rs)))
            if m > best:
                best_name, best = name, m
        ratio = med / best
        print(
            f"ratio cnnlab / best torchvision ({best_name}): {ratio:.1f}x  "
            f"(goal >= 10x: {'met' if ratio >= 10 else 'NOT met'})"
        )
        rows.append(("ratio_vs_best_torchvision", ratio, ratio, ratio, 1))

        fold = bench_folder(x_nhwc, y, ds.classes, args.folder_images, args.runs)
        m, lo, hi = _median_spread(fold)
        print(
            f"folder -> cache preprocessing    median {m:10,.0f} img/s  (min {lo:,.0f}, max {hi:,.0f}, n={len(fold)}; "
            f"{args.folder_images} JPEG q75 32x32; clock: list, decode, write memmap, fsync, statistics)"
        )
        rows.append(("folder_to_cache", m, lo, hi, len(fold)))
    sh = bench_shapes(args.runs)
    m, lo, hi = _median_spread(sh)
    print(
        f"shapes generation 32 px         median {m:10,.0f} img/s  "
        f"(min {lo:,.0f}, max {hi:,.0f}, n={len(sh)}; goal >= 10,000)"
    )
    rows.append(("shapes_generate_32px", m, lo, hi, len(sh)))

    out = Path(args.csv) if args.csv else _machine.result_path("loader")
    cols = ("measure", "median_img_per_s", "min", "max", "runs")
    table = [dict(zip(cols, (name, f"{m:.1f}", f"{lo:.1f}", f"{hi:.1f}", n))) for name, m, lo, hi, n in rows]
    print(f"wrote {_machine.write_csv(out, table)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
