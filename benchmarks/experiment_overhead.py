"""What the experiment framework adds to the trials it runs (issue 13's budget: at most 3%).

Two contenders, interleaved, each on the same tiny experiment (degradation at its quick size, four arms, one
seed, one torch thread):
  framework  `cnnlab.experiments.runner.run` into a fresh directory: data subset, analyzer costs, every trial
             through cnnlab.train.loop.train, report.md, two plots, results.json;
  direct     the same trials (the same recipes, the same data file) through cnnlab.train.loop.train alone.
The clock (wall) includes everything each does from its start to its return; the data file the direct trials
read is written before the clock starts. The ratio framework/direct - 1 is the overhead.

    .venv/bin/python benchmarks/experiment_overhead.py --rounds 3
    .venv/bin/python benchmarks/experiment_overhead.py --rounds 3 --train-images 1500 --epochs 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line, result_path, write_csv  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10.npz"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", default=f"npz:{SHARED}" if SHARED.is_file() else "shapes:size=32,classes=10")
    # The quick size's trials last seconds, so the fixed cost (about 2 s) dominates; larger sizes show the share
    # a real run pays.
    p.add_argument("--train-images", type=int, default=0, help="training images per trial (default: quick size)")
    p.add_argument("--epochs", type=int, default=0, help="epochs per trial (default: quick size)")
    p.add_argument("--csv", help="result file (default benchmarks/results/experiment_overhead-<cpu>.csv)")
    args = p.parse_args(argv)

    from cnnlab.experiments import get_experiment, runner
    from cnnlab.experiments.base import make_config
    from cnnlab.experiments.data import prepare
    from cnnlab.timing import time_interleaved
    from cnnlab.train.loop import train

    exp = get_experiment("degradation")
    size = {k: v for k, v in (("train_images", args.train_images), ("epochs", args.epochs)) if v}
    cfg = make_config(exp, "quick", {"data": args.data, "seeds": 1, "threads": 1, **size})
    work = Path(tempfile.mkdtemp(prefix="cnnlab-overhead-"))
    prepare(cfg, exp, work / "data", log=lambda s: None)
    count = {"n": 0}

    def fresh() -> Path:
        count["n"] += 1
        return work / f"r{count['n']}"

    def framework() -> None:
        runner.run(exp, cfg, fresh(), log=lambda s: None)

    def direct() -> None:
        out = fresh()
        for seed in range(cfg.seeds):
            for arm in exp.arms(cfg):
                recipe = runner.trial_recipe(cfg, arm, seed, work / "data" / "data.npz")
                train(recipe, out / f"{arm.name}-{seed}", log=lambda s: None)

    t = time_interleaved(
        {"framework": framework, "direct": direct},
        args.rounds,
        includes={
            "framework": "data subset, analyzer, 4 trials, report and plots",
            "direct": "4 trials through train() on a data file written before the clock",
        },
    )
    ratio = t["framework"].median / t["direct"].median
    print(cpu_line())
    for name, v in t.items():
        print(f"{name:>10}: median {v.median:.2f} s (min {v.min:.2f}, max {v.max:.2f}, {args.rounds} rounds)")
    print(f"overhead: {100 * (ratio - 1):+.1f}% (framework / direct = {ratio:.3f}; budget +3%)")
    row = {"framework_s": round(t["framework"].median, 3), "direct_s": round(t["direct"].median, 3),
           "ratio": round(ratio, 4), "rounds": args.rounds, "data": args.data,
           "train_images": cfg.train_images, "epochs": cfg.epochs}  # fmt: skip
    print(f"results: {write_csv(args.csv or result_path('experiment_overhead'), [row])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
