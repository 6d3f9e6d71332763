"""`cnnlab models [PATTERN] [--json]`: the zoo table."""

from __future__ import annotations

import argparse
import json
import sys

from cnnlab.registry import list_models, model_info

HELP = "list the model zoo (name, family, params, MACs at the default input, default input, year)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")


def zoo_rows(pattern: str = "*", progress: bool = False) -> list[dict]:
    """One row per model; `progress` shows a bar on a terminal's stderr while the MACs are counted (the whole
    zoo takes half a minute on a small CPU), erased before the table is printed."""
    from cnnlab.analysis import total_macs
    from cnnlab.train.progress import Progress

    rows = []
    names = list_models(pattern)
    bar = Progress(len(names), "counting MACs", enabled=progress)
    for name in names:
        bar.update(0)
        info = model_info(name)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "params": info.params,
                "macs": total_macs(name),  # counted by the analyzer on the meta device, bias excluded
                "input": "x".join(map(str, info.input_size)),
                "year": info.paper.year,
            }
        )
    bar.close(clear=True)
    return rows


def si(n: float) -> str:
    """1234567 -> '1.23M': three significant figures, as the papers' tables print them."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}" if n < 100 * scale else f"{n / scale:.0f}{unit}"
    return str(int(n))


def run(args: argparse.Namespace) -> int:
    rows = zoo_rows(args.pattern, progress=sys.stderr.isatty())  # a log gets no bar, not even its last line
    if not rows:
        from cnnlab.errors import UnknownNameError

        raise UnknownNameError("model pattern", args.pattern, list_models())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<24} {'family':<14} {'params':>13} {'MACs':>8} {'input':>11} {'year':>5}")
    for r in rows:
        macs = si(r["macs"])
        print(f"{r['name']:<24} {r['family']:<14} {r['params']:>13,} {macs:>8} {r['input']:>11} {r['year']:>5}")
    print(f"{len(rows)} models")
    return 0
