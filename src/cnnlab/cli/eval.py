"""`cnnlab eval RUN_OR_CHECKPOINT [--data SPEC] [--tta MODE] [--ensemble CKPT ...]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "evaluate a run or checkpoint (top-1/top-5, per-class, confusion matrix, TTA, ensembles)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a run directory (its best checkpoint) or a .safetensors checkpoint")
    p.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test", help="test (default), val or train")
    p.add_argument("--tta", default="none", help="none, flip, 10crop or multiscale")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT", help="more checkpoints to average with")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="directory for eval.json and confusion.png (default: the run directory)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.fileio import write_json
    from cnnlab.train.ddp import pick_device
    from cnnlab.train.evaluate import check_batch_size, check_tta, evaluate, plot_confusion

    check_tta(args.tta)  # before any model or data is loaded
    check_batch_size(args.batch_size)
    report = evaluate(
        [args.checkpoint, *args.ensemble],
        data=args.data,
        split=args.split,
        tta=args.tta,
        batch_size=args.batch_size,
        device=pick_device(args.device),
        progress=not args.no_progress,
    )
    src = Path(args.checkpoint)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
    tag = f"eval-{args.split}-{args.tta}" + (f"-ensemble{1 + len(args.ensemble)}" if args.ensemble else "")
    write_json(out / f"{tag}.json", report)
    png = plot_confusion(report, out / f"{tag}-confusion.png")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['data']} [{args.split}], {report['n']} images, TTA {args.tta}")
    if len(report["members"]) > 1:
        for m in report["members"]:
            print(f"  member {m['model']:<16} top-1 {100 * m['top1']:6.2f}%  top-5 {100 * m['top5']:6.2f}%")
        print(f"  ensemble of {len(report['members'])} (softmax average):")
    print(f"top-1 {100 * report['top1']:.2f}%   top-5 {100 * report['top5']:.2f}%")
    print("per-class accuracy:")
    for name, acc in report["per_class"].items():
        print(f"  {name:<16} {'-' if acc is None else f'{100 * acc:6.2f}%'}")
    print(f"report: {out / f'{tag}.json'}\nconfusion matrix: {png}")
    return 0
