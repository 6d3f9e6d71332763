"""Training throughput: cnnlab's loader + loop against a plain PyTorch loop fed by a torchvision DataLoader.

Same model (resnet20, fp32, batch 128, 32x32 `shapes` images), same process, same thread count; every contender
is warmed up once, then run in `--rounds` interleaved rounds (order rotated per round); the figures are medians
over rounds. Then a per-architecture table of training and inference img/s for the zoo.

    .venv/bin/python benchmarks/train_throughput.py                 # the comparison, then the table
    .venv/bin/python benchmarks/train_throughput.py --rounds 3 --table 'resnet*'
    .venv/bin/python benchmarks/train_throughput.py --no-compare --table-channels-last --table 'resnet*'

Contenders, and what each clock includes:
- cnnlab: `cnnlab.train.loop.train` with its defaults (channels_last="auto", which is channels-last on the
  CPU). Its loop clock (summary.json's train_seconds) covers batch gathering and augmentation, forward,
  backward, optimizer step, the finiteness checks and bookkeeping, not building the model or the run
  directory. Two fresh runs, of --warmup + --steps and of --warmup iterations: the difference of their
  clocks times the last --steps steps, leaving out the cold first steps as the textbook loop's untimed
  warm-up does. The summary.json figure of the longer run (cold start included) is printed too.
- cnnlab NCHW: the same with channels_last=false, to show how much of the gain is the memory layout.
- textbook: a torchvision `DataLoader` over PIL images with RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor, Normalize (the CIFAR-10 tutorial pipeline), and the textbook loop: zero_grad, forward,
  cross-entropy, backward, SGD step; `--steps` steps timed after `--warmup` untimed ones. With 0 and 2 workers,
  and with 0 workers plus a channels-last model (the same layout as cnnlab's, to compare loader + loop alone).
- step only: the textbook step on one fixed batch, no data loading at all: the ceiling that any loader and
  loop could reach with this model, layout and thread count.
- table: per model, `--table-steps` textbook training steps (NCHW, SGD, batch `--table-batch`) and eval-mode
  forward passes on random data, each after one warm-up step; the median of 3 timings. CIFAR-style models run at 32x32,
  the others at their smallest working size rounded up to a multiple of 32 (at least 64).
Results go to benchmarks/results/train_throughput-<cpu tag>.csv (the comparison) and
train_throughput_table[_subset][_channels_last]-<cpu tag>.csv (the table), every row with the cpu, cpu_flags,
torch, threads columns (see benchmarks/_machine.py).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _machine
import torch
import torch.nn.functional as F

from cnnlab import timing

SUMMARY_FIGURES: dict[str, list[float]] = {}  # cnnlab's own summary.json img/s, cold first step included


def cnnlab_img_per_s(
    steps: int, batch: int, data: str, threads: int, warmup: int, channels_last: str = "auto"
) -> float:
    """Steady-state img/s of cnnlab's loop: two fresh runs, of warmup + steps and of warmup iterations; the
    difference of their loop clocks (summary.json's train_seconds) times the last `steps` steps, so the cold
    first steps are left out exactly as the textbook loop's untimed warm-up steps are."""
    from cnnlab.train.loop import train
    from cnnlab.train.recipe import load_recipe

    def run(iterations: int) -> dict:
        recipe = load_recipe(
            None,
            model="resnet20",
            data=data,
            batch_size=batch,
            iterations=iterations,
            lr=0.1,
            augment="flip,crop:4",
            threads=threads,
            progress=False,
            plots=False,
            val_fraction=0.0,
            channels_last=channels_last,
        )
        with tempfile.TemporaryDirectory() as tmp:
            return train(recipe, out=Path(tmp) / "run", log=lambda s: None).summary

    long, short = run(warmup + steps), run(warmup)
    SUMMARY_FIGURES.setdefault(channels_last, []).append(long["images_per_second"])
    return steps * batch / (long["train_seconds"] - short["train_seconds"])


def _textbook_model(n_classes: int, channels_last: bool):
    from cnnlab import create_model

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=n_classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    return model, opt


def baseline_img_per_s(
    steps: int, batch: int, data: str, workers: int, warmup: int, channels_last: bool = False
) -> float:
    import torchvision.transforms as T
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

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
    model, opt = _textbook_model(len(ds.classes), channels_last)
    done, t0 = 0, None
    while done < steps + warmup:
        for xb, yb in loader:
            if done == warmup:
                t0 = time.perf_counter()
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
            done += 1
            if done == steps + warmup:
                break
    return steps * batch / (time.perf_counter() - t0)


def step_only_img_per_s(steps: int, batch: int, warmup: int, channels_last: bool) -> float:
    model, opt = _textbook_model(10, channels_last)
    xb, yb = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    for i in range(steps + warmup):
        if i == warmup:
            t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def compare(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, timing.Timing]:
    """img/s per contender: one warm-up call each, then `rounds` interleaved rounds, order rotated per round
    (cnnlab.timing); each contender clocks its own steady-state steps (see the module docstring)."""
    return timing.interleave_figures(
        contenders,
        rounds,
        clock="wall",
        includes="the timed training steps of one fresh run: loading, augmentation, forward, backward, step",
        unit="img/s",
    )


def _timed(fn, n: int, batch: int, includes: str) -> float:
    fn()  # warm-up: one call
    t = timing.time_interleaved({"block": lambda: [fn() for _ in range(n)]}, 3, includes=includes, warmup=0)
    return n * batch / t["block"].median


def _model_rates(name: str, shape: tuple[int, int, int], steps: int, batch: int, channels_last: bool) -> tuple:
    """(training img/s, inference img/s) of one model on random data."""
    from cnnlab import create_model

    torch.manual_seed(0)
    model = create_model(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, model.num_classes, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def train_step() -> None:
        opt.zero_grad()
        out = model(x)
        F.cross_entropy(out[0] if isinstance(out, tuple) else out, y).backward()
        opt.step()

    model.train()
    train = _timed(train_step, steps, batch, "training steps on a fixed batch: zero_grad, forward, loss, backward, SGD")
    model.eval()
    with torch.no_grad():
        infer = _timed(lambda: model(x), steps, batch, "eval-mode forward passes on a fixed batch, no autograd")
    return round(train, 1), round(infer, 1)


def bench_model(name: str, steps: int, batch: int, channels_last: bool = False) -> dict:
    """Training and inference img/s in NCHW; with `channels_last`, training again with a channels-last model
    and input (what cnnlab's "auto" does on the CPU)."""
    from cnnlab import model_info

    info = model_info(name)
    c, h, _ = info.input_size
    # CIFAR nets at 32; ImageNet nets at 64 px, or their minimum where it is larger (inception_v3, zfnet, ...).
    size = 32 if h <= 32 else max(64, info.min_input_size)
    row = {"model": name, "input": f"{c}x{size}x{size}", "batch": batch}
    try:
        row["train_img_s"], row["infer_img_s"] = _model_rates(name, (c, size, size), steps, batch, False)
        if channels_last:
            row["train_cl_img_s"], _ = _model_rates(name, (c, size, size), steps, batch, True)
    except Exception as e:  # noqa: BLE001 - one model's failure must not hide the others
        row["error"] = str(e).splitlines()[0][:80]
    return row


def table(pattern: str, steps: int, batch: int, channels_last: bool) -> list[dict]:
    from cnnlab import list_models

    rows = []
    # A comma-separated list of fnmatch patterns (`resnet20,mobilenet_v2,*vgg*`), in the order given.
    names = list(dict.fromkeys(n for pat in pattern.split(",") if pat for n in list_models(pat)))
    for name in names:
        r = bench_model(name, steps, batch, channels_last)
        rows.append(r)
        note = f"  ({r['error']})" if "error" in r else ""
        train_s, infer_s = r.get("train_img_s", "-"), r.get("infer_img_s", "-")
        cl = ""
        if "train_cl_img_s" in r:
            cl = f"  train channels-last {r['train_cl_img_s']:>9} (x{r['train_cl_img_s'] / r['train_img_s']:.2f})"
        print(f"{name:<24} {r['input']:>10}  train {train_s:>9}  infer {infer_s:>9}{cl}{note}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=15, help="timed training steps per contender and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--data", default="shapes:train=5000,test=500")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to try")
    p.add_argument("--table", default="*", help="fnmatch pattern(s) of zoo models, comma-separated ('' to skip)")
    p.add_argument("--table-steps", type=int, default=2)
    p.add_argument("--table-batch", type=int, default=16)
    p.add_argument("--table-channels-last", action="store_true", help="also time training channels-last")
    p.add_argument("--no-compare", action="store_true", help="skip the resnet20 comparison (the table only)")
    args = p.parse_args(argv)
    print(_machine.cpu_line(), flush=True)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    if not args.no_compare:
        comparison(args, _machine.result_path("train_throughput"))
    if not args.table:
        return
    rows = table(args.table, args.table_steps, args.table_batch, args.table_channels_last)
    # A subset or an extra column goes to its own file, so the committed whole-zoo table is not overwritten.
    name = "train_throughput_table" + ("" if args.table == "*" else "_subset")
    name += "_channels_last" if args.table_channels_last else ""
    cols = ["model", "input", "batch", "train_img_s", "infer_img_s"]
    cols += ["train_cl_img_s"] if args.table_channels_last else []
    table_rows = [{k: r.get(k, "") for k in [*cols, "error"]} for r in rows]
    print(f"wrote {_machine.write_csv(_machine.result_path(name), table_rows)}")


def comparison(args: argparse.Namespace, out: Path) -> None:
    print(f"resnet20 fp32, batch {args.batch}, 32x32, {args.steps} steps x {args.rounds} interleaved rounds, medians")
    st, b, d, wu = args.steps, args.batch, args.data, args.warmup
    contenders: dict[str, Callable[[], float]] = {
        "cnnlab (defaults: channels-last on CPU)": lambda: cnnlab_img_per_s(st, b, d, args.threads, wu),
        "cnnlab, channels_last=false": lambda: cnnlab_img_per_s(st, b, d, args.threads, wu, "false"),
    }
    for n in args.workers:
        contenders[f"textbook, DataLoader workers={n}"] = lambda n=n: baseline_img_per_s(st, b, d, n, wu)
    contenders["textbook, workers=0, channels-last"] = lambda: baseline_img_per_s(st, b, d, 0, wu, True)
    contenders["step only, no data (NCHW)"] = lambda: step_only_img_per_s(st, b, wu, False)
    contenders["step only, no data (channels-last)"] = lambda: step_only_img_per_s(st, b, wu, True)
    got = compare(contenders, args.rounds)
    med = {k: t.median for k, t in got.items()}
    baselines = [k for k in med if k.startswith("textbook, DataLoader")]
    best = max(baselines, key=med.get)
    ours = "cnnlab (defaults: channels-last on CPU)"
    for k, t in got.items():
        print(f"{k:<40} {med[k]:8.1f} img/s  (min {t.min:.1f}, max {t.max:.1f})  x{med[k] / med[best]:.2f}")
    rounds = got[ours].samples
    per_round = [rounds[r] / max(got[k].samples[r] for k in baselines) for r in range(args.rounds)]
    print(f"ratio cnnlab / best textbook ({best}): {med[ours] / med[best]:.2f}x "
          f"(per round {min(per_round):.2f}-{max(per_round):.2f}x; goal >= 1.3x)")  # fmt: skip
    for layout, figures in SUMMARY_FIGURES.items():
        print(f"cnnlab summary.json img/s over {wu + st} steps, cold start included (channels_last={layout}): "
              f"median {statistics.median(figures[1:]):.1f}")  # fmt: skip
    same = med[ours] / med["textbook, workers=0, channels-last"]
    ceiling = med["step only, no data (channels-last)"] / med[best]
    print(f"same layout (loader + loop alone): {same:.2f}x; "
          f"ceiling for any loader + loop with this model and layout: {ceiling:.2f}x")  # fmt: skip
    rows = [
        {"what": f"resnet20: {k}", "input": "3x32x32", "batch": args.batch, "train_img_s": round(v, 1),
         "note": f"median of {args.rounds} rounds"}
        for k, v in med.items()
    ]  # fmt: skip
    print(f"wrote {_machine.write_csv(out, rows)}")


if __name__ == "__main__":
    main()
