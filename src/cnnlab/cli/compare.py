"""`cnnlab compare NAME... [--input 3x224x224] [--plot FILE.png]`: params, MACs and published top-1, and the
lecture's bubble chart."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.errors import CnnlabError

HELP = "compare models: params, GMACs, published top-1; optional bubble chart (Canziani et al. 2016)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+", help="zoo names or fnmatch patterns ('resnet*')")
    p.add_argument("--input", default=None, help="CxHxW for every model (default: each model's own)")
    p.add_argument("--plot", type=Path, default=None, help="write the bubble chart to this .png")


def check_plot(path: Path, names: list[str]) -> None:
    """Refuse a --plot that cannot be written, or that would chart nothing (no model has a published top-1)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from cnnlab.registry import model_info

    if not path.parent.resolve().is_dir():
        raise CnnlabError(f"--plot: directory {path.parent} does not exist")
    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise CnnlabError(f"--plot: cannot write '{path.suffix or path.name}' images; use .png, .svg or .pdf")
    if all(model_info(n).published.top1 is None for n in names):
        listed = ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:6])} and {len(names) - 6} more"
        raise CnnlabError(
            f"--plot: nothing to chart: none of {listed} has a published ImageNet top-1; "
            "drop --plot, or add a model that has one (e.g. resnet18)"
        )


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.compare import compare, plot_bubbles, to_text
    from cnnlab.cli.analyze import parse_input
    from cnnlab.errors import UnknownNameError
    from cnnlab.registry import list_models

    names: list[str] = []
    for pattern in args.names:
        found = list_models(pattern) if any(ch in pattern for ch in "*?[") else [pattern]
        if not found:
            raise UnknownNameError("model pattern", pattern, list_models())
        names += [n for n in found if n not in names]
    size = parse_input(args.input) if args.input is not None else None
    if args.plot is not None:
        check_plot(args.plot, names)  # before the analysis: a bad --plot should not cost a minute first
    entries = compare(names, size)
    print(to_text(entries), end="")
    if args.plot is not None:
        skipped = plot_bubbles(entries, args.plot)
        print(f"chart written to {args.plot}")
        if skipped:
            print(f"left out of the chart (no published top-1): {', '.join(skipped)}")
    return 0
