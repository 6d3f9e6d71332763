"""`cnnlab report RUN_DIR|EXPERIMENT_DIR [--out report.html]`: one self-contained HTML page from the files a run
or an experiment already wrote (cnnlab.report); nothing is re-run, so it renders any old directory."""

from __future__ import annotations

import argparse

HELP = "one self-contained HTML page (plots embedded, no scripts) for a run or an experiment directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="a run directory (cnnlab train --out) or an experiment's (cnnlab reproduce)")
    p.add_argument("--out", help="the HTML file to write (default: DIRECTORY/report.html)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.report import write_report

    out, kind, notes = write_report(args.directory, args.out)
    size = out.stat().st_size
    print(f"{kind} report written to {out} ({size / 1024:,.0f} KB, self-contained)")
    for note in notes:  # what the page says it left out or computed, so the terminal knows too
        print(f"  note: {note}")
    return 0
