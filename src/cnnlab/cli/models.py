"""`cnnlab models [PATTERN] [--json]`: the zoo table."""

from __future__ import annotations

import argparse
import json

from cnnlab.registry import list_models, model_info

HELP = "list the model zoo (name, family, params, default input, year)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def zoo_rows(pattern: str = "*") -> list[dict]:
    import torch

    rows = []
    for name in list_models(pattern):
        info = model_info(name)
        from cnnlab.registry import get_entry

        entry = get_entry(name)
        with torch.device("meta"):  # counting parameters needs shapes only, not memory
            net = entry.family.build(
                entry.spec,
                num_classes=entry.family.default_num_classes(name, entry.spec),
                in_chans=info.input_size[0],
            )
        rows.append(
            {
                "name": name,
                "family": info.family,
                "params": sum(p.numel() for p in net.parameters()),
                "input": "x".join(map(str, info.input_size)),
                "year": info.paper.year,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = zoo_rows(args.pattern)
    if not rows:
        from cnnlab.errors import UnknownNameError

        raise UnknownNameError("model pattern", args.pattern, list_models())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<24} {'family':<12} {'params':>13} {'input':>11} {'year':>5}")
    for r in rows:
        print(f"{r['name']:<24} {r['family']:<12} {r['params']:>13,} {r['input']:>11} {r['year']:>5}")
    print(f"{len(rows)} models")
    return 0
