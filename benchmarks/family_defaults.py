"""Each family's default recipe (configs/families/) against cnnlab's generic defaults, trained the same way.

For each model, two runs of `cnnlab train` differing only in the recipe beneath the command line: `generic`
(an empty recipe file, so the Recipe dataclass defaults: SGD lr 0.1, cosine, flip + crop) and `family` (no
--recipe, so the family's file). Same data, epochs, seed and thread count. This measures accuracy, not speed:
the clock figures are the runs' own train_seconds, for scale only.

    .venv/bin/python benchmarks/family_defaults.py                        # the default set (~1 h on 2 cores)
    .venv/bin/python benchmarks/family_defaults.py --models lenet5 resnet20

lenet5 trains on MNIST (2 epochs, as docs/training.md), every other model on the first --train images of
CIFAR-10 (../shared/data/cifar10.npz) and 2,000 of its test images. Runs live in --work and the script resumes:
a finished run is read back, an interrupted one continued. Results: benchmarks/results/family_defaults-<cpu>.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line, result_path, write_csv  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# One model per family, its smallest variant; inception_v3 (299 px with its auxiliary head), inception_v4 (75 px
# minimum, 12 GMACs at 299) and zfnet (AlexNet's recipe and cost) are left out for time.
MODELS = ("lenet5", "resnet20", "mobilenet_v2", "mobilenet_v1_050", "shufflenet_v2_x0_5", "squeezenet1_1",
          "efficientnet_b0", "vgg11_bn", "googlenet", "alexnet", "densenet121")  # fmt: skip


def cifar_subset(work: Path, n_train: int, n_test: int = 2000) -> Path:
    out = work / f"cifar10-{n_train}.npz"
    if not out.exists():
        with np.load(SHARED / "cifar10.npz", allow_pickle=False) as z:
            np.savez(out, x_train=z["x_train"][:n_train], y_train=z["y_train"][:n_train],
                     x_test=z["x_test"][:n_test], y_test=z["y_test"][:n_test])  # fmt: skip
    return out


def run_one(model: str, arm: str, data: str, epochs: int, seed: int, threads: int, work: Path) -> dict:
    from cnnlab.cli import main

    run = work / f"{model}-{arm}"
    if (run / "summary.json").is_file():
        return json.loads((run / "summary.json").read_text())
    if (run / "failed.json").is_file():  # a diverged run is a result too, not a reason to retry
        return json.loads((run / "failed.json").read_text())
    if (run / "run.json").is_file():
        argv = ["train", "--resume", str(run), "--no-progress"]
    else:
        argv = ["train", model, "--data", data, "--epochs", str(epochs), "--seed", str(seed), "--out", str(run),
                "--no-progress", "--set", f"threads={threads}", "--set", "plots=false"]  # fmt: skip
        if arm == "generic":
            empty = work / "generic.toml"
            empty.write_text("# the Recipe dataclass defaults\n")
            argv += ["--recipe", str(empty)]
    code = main(argv)
    if code != 0:  # e.g. the loss went non-finite: recorded as a failed run, the table says so
        failed = {"test_top1": None, "best_val_acc": None, "train_seconds": None, "failed": f"exit {code}"}
        (run / "failed.json").write_text(json.dumps(failed))
        return failed
    return json.loads((run / "summary.json").read_text())


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--train", type=int, default=5000, help="CIFAR-10 training images (default 5000)")
    p.add_argument("--epochs", type=int, default=3, help="epochs on CIFAR-10 (lenet5: 2 on MNIST)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/cnnlab-family-defaults")
    p.add_argument("--csv", default=None)
    args = p.parse_args()
    import cnnlab

    unknown = [m for m in args.models if m not in cnnlab.list_models()]
    if unknown:
        p.error(f"unknown model(s): {', '.join(unknown)} (see `cnnlab models`)")
    from cnnlab.registry import get_entry

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(cpu_line())
    rows = []
    for model in args.models:
        if model == "lenet5":
            data, epochs = f"npz:{SHARED / 'mnist.npz'}", 2
        else:
            data, epochs = f"npz:{cifar_subset(work, args.train)}", args.epochs
        for arm in ("generic", "family"):
            s = run_one(model, arm, data, epochs, args.seed, args.threads, work)
            row = {"model": model, "family": get_entry(model).family.name, "arm": arm, "data": Path(data).name,
                   "epochs": epochs, "seed": args.seed, "test_top1": _round(s["test_top1"]),
                   "best_val_acc": _round(s["best_val_acc"]), "train_seconds": s["train_seconds"],
                   "failed": s.get("failed", "")}  # fmt: skip
            rows.append(row)
            shown = f"{100 * s['test_top1']:6.2f}%" if s["test_top1"] is not None else f"failed ({s['failed']})"
            print(f"{model:<20} {arm:<8} test top-1 {shown}")
    out = write_csv(Path(args.csv) if args.csv else result_path("family_defaults"), rows)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
