"""Training throughput: cnnlab's loader + loop against a plain PyTorch loop fed by a torchvision DataLoader.

Same model (resnet20, fp32, batch 128, 32x32 `shapes` images), same process, same thread count, measured one
after the other; then a per-architecture table of training and inference img/s for the zoo.

    .venv/bin/python benchmarks/train_throughput.py                 # the comparison, then the table
    .venv/bin/python benchmarks/train_throughput.py --steps 20 --table 'resnet*'

What the clock includes:
- cnnlab: `cnnlab.train.loop.train` with `iterations=N` (no checkpoint within the run); img/s is its own
  `summary.json` figure: the training loop only (batch gathering, augmentation, forward, backward, optimizer
  step, bookkeeping), after one warm-up run of the same length.
- baseline: a torchvision `DataLoader` over PIL images with RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor, Normalize (the CIFAR-10 tutorial pipeline), and the textbook loop: zero_grad, forward,
  cross-entropy, backward, SGD step. Timed over the same number of steps after `--warmup` steps.
- table: per model, `--table-steps` training steps (SGD, batch `--table-batch`) and eval-mode forward passes
  on random data, each after one warm-up step; the median of 3 timings. CIFAR-style models run at 32x32,
  the others at their smallest working size rounded up to a multiple of 32 (at least 64).
Results go to benchmarks/results/train_throughput-<hostname>.csv.
"""

from __future__ import annotations

import argparse
import csv
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def cnnlab_img_per_s(steps: int, batch: int, data: str, threads: int) -> float:
    from cnnlab.train.loop import train
    from cnnlab.train.recipe import load_recipe

    recipe = load_recipe(
        None,
        model="resnet20",
        data=data,
        batch_size=batch,
        iterations=steps,
        lr=0.1,
        augment="flip,crop:4",
        threads=threads,
        progress=False,
        plots=False,
        val_fraction=0.0,
    )
    rates = []
    for _ in range(2):  # the first run warms caches (and imports); the second is measured
        with tempfile.TemporaryDirectory() as tmp:
            res = train(recipe, out=Path(tmp) / "run", log=lambda s: None)
            rates.append(res.summary["images_per_second"])
    return rates[-1]


def baseline_img_per_s(steps: int, batch: int, data: str, workers: int, warmup: int) -> float:
    import torchvision.transforms as T
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from cnnlab import create_model
    from cnnlab.data import load

    ds = load(data, split="train", val_fraction=0.0)
    x = ds.x.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8, as PIL wants
    y = ds.y

    class PILSet(Dataset):
        def __init__(self) -> None:
            self.tf = T.Compose(
                [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(ds.mean, ds.std)]
            )

        def __len__(self) -> int:
            return len(y)

        def __getitem__(self, i: int):
            return self.tf(Image.fromarray(x[i])), int(y[i])

    loader = DataLoader(PILSet(), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=len(ds.classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    done, t0 = 0, None
    while done < steps + warmup:
        for xb, yb in loader:
            if done == warmup:
                t0 = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
            done += 1
            if done == steps + warmup:
                break
    return steps * batch / (time.perf_counter() - t0)


def _timed(fn, n: int, batch: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append(time.perf_counter() - t)
    return n * batch / statistics.median(times)


def bench_model(name: str, steps: int, batch: int) -> dict:
    from cnnlab import create_model, model_info

    info = model_info(name)
    c, h, _ = info.input_size
    # CIFAR nets at 32; ImageNet nets at 64 px, or their minimum where it is larger (inception_v3, zfnet, ...).
    size = 32 if h <= 32 else max(64, info.min_input_size)
    row = {"model": name, "input": f"{c}x{size}x{size}", "batch": batch}
    try:
        model = create_model(name)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(batch, c, size, size)
        y = torch.randint(0, model.num_classes, (batch,))

        def train_step() -> None:
            opt.zero_grad()
            out = model(x)
            F.cross_entropy(out[0] if isinstance(out, tuple) else out, y).backward()
            opt.step()

        model.train()
        row["train_img_s"] = round(_timed(train_step, steps, batch), 1)
        model.eval()
        with torch.no_grad():
            row["infer_img_s"] = round(_timed(lambda: model(x), steps, batch), 1)
    except Exception as e:  # noqa: BLE001 - one model's failure must not hide the others
        row["error"] = str(e).splitlines()[0][:80]
    return row


def table(pattern: str, steps: int, batch: int) -> list[dict]:
    from cnnlab import list_models

    rows = []
    for name in list_models(pattern):
        r = bench_model(name, steps, batch)
        rows.append(r)
        note = f"  ({r['error']})" if "error" in r else ""
        train_s, infer_s = r.get("train_img_s", "-"), r.get("infer_img_s", "-")
        print(f"{name:<24} {r['input']:>10}  train {train_s:>9}  infer {infer_s:>9}{note}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed training steps per side")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--data", default="shapes:train=5000,test=500")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to try")
    p.add_argument("--table", default="*", help="fnmatch pattern of zoo models for the table ('' to skip)")
    p.add_argument("--table-steps", type=int, default=2)
    p.add_argument("--table-batch", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"host {socket.gethostname()}; resnet20 fp32, batch {args.batch}, 32x32, {args.steps} steps")  # fmt: skip
    ours = cnnlab_img_per_s(args.steps, args.batch, args.data, args.threads)
    print(f"cnnlab loader + loop:                  {ours:8.1f} img/s")
    base = {}
    for w in args.workers:
        base[w] = baseline_img_per_s(args.steps, args.batch, args.data, w, args.warmup)
        print(f"torchvision DataLoader (workers={w}):   {base[w]:8.1f} img/s   ratio {ours / base[w]:.2f}x")
    best = max(base.values())
    print(f"ratio against the best baseline: {ours / best:.2f}x (goal >= 1.3x)")
    rows = table(args.table, args.table_steps, args.table_batch) if args.table else []
    out = Path(__file__).parent / "results" / f"train_throughput-{socket.gethostname()}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["what", "input", "batch", "train_img_s", "infer_img_s", "note"])
        w.writerow(["cnnlab resnet20", "3x32x32", args.batch, round(ours, 1), "", "loader+loop"])
        for k, v in base.items():
            w.writerow([f"baseline resnet20 workers={k}", "3x32x32", args.batch, round(v, 1), "", "torchvision"])
        for r in rows:
            w.writerow([r["model"], r["input"], r["batch"], r.get("train_img_s", ""), r.get("infer_img_s", ""),
                        r.get("error", "")])  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
