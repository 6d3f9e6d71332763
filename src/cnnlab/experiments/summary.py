"""The results table of the README and docs/reproduce.md, generated from the committed full runs.

One row per judged claim; an experiment's exact cost claims fold into one row (they agree or not together).
Two tables: the lecture's architecture and practice claims, and the numerical-precision lab's (PRECISION), each
between its own markers, in the README and in its doc page (docs/reproduce.md, docs/precision.md).
`python -m cnnlab.experiments.summary` rewrites every table in place; tests/experiments/test_summary.py fails
when a committed table no longer matches its results.json files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

START, END = "<!-- results: generated from docs/reproduce/*/results.json -->", "<!-- /results -->"
P_START, P_END = (
    "<!-- precision results: generated from docs/reproduce/*/results.json -->",
    "<!-- /precision results -->",
)
PRECISION = ("rounding", "half", "bfloat16", "binary")  # the precision lab (docs/precision.md)
HEADER = ["| experiment | claim | ours | paper | verdict |", "|---|---|---|---|---|"]


def _phrase(verdict: str) -> str:
    return verdict.split(":", 1)[0]


def rows(name: str, results: dict[str, Any], link: str) -> list[str]:
    """Markdown rows for one experiment's results.json; `link` is its report.md as the table's page sees it."""
    head = f"[`{name}`]({link})"
    claims = results["claims"]
    exact = [c for c in claims if c.get("kind") == "exact"]
    out = []
    if exact:
        agree = sum(_phrase(c["verdict"]) == "agrees" for c in exact)
        more = f" (and {len(exact) - 1} more cost claims)" if len(exact) > 1 else ""
        verdict = "agrees" if agree == len(exact) else "does not agree"
        out.append(f"| {head} | cost: {exact[0]['text']}{more} | {agree} of {len(exact)} exact counts equal the "
                   f"formulas | {exact[0]['published']} | **{verdict}** |")  # fmt: skip
    for c in claims:
        if c.get("kind") != "exact":
            out.append(f"| {head} | {c['text']} | {c['ours']} | {c['published']} | **{_phrase(c['verdict'])}** |")
    return out


def table(docs: Path, names: list[str], prefix: str) -> str:
    """The whole table for experiments `names` (in this order) that have docs/NAME/results.json."""
    lines = list(HEADER)
    for name in names:
        path = docs / name / "results.json"
        if path.is_file():
            lines += rows(name, json.loads(path.read_text()), f"{prefix}{name}/report.md")
    return "\n".join(lines)


def replace_table(text: str, new: str, start: str = START, end: str = END) -> str:
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated results table ({start}) in this file")
    return pattern.sub(lambda _: f"{start}\n{new}\n{end}", text)


def targets(root: Path) -> list[tuple[Path, str, bool]]:
    """Each (page, the prefix its links need, whether its table is the precision lab's)."""
    readme, docs = root / "README.md", root / "docs"
    return [
        (readme, "docs/reproduce/", False),
        (readme, "docs/reproduce/", True),
        (docs / "reproduce.md", "reproduce/", False),
        (docs / "precision.md", "reproduce/", True),
    ]


def fresh(root: Path, page: Path, prefix: str, precision: bool, text: str) -> str:
    """`text` (the page's) with its table regenerated from docs/reproduce/*/results.json."""
    from cnnlab.experiments import EXPERIMENTS

    names = [n for n in EXPERIMENTS if (n in PRECISION) == precision]
    start, end = (P_START, P_END) if precision else (START, END)
    return replace_table(text, table(root / "docs" / "reproduce", names, prefix), start, end)


def main(root: Path = Path(".")) -> None:
    for page, prefix, precision in targets(root):
        page.write_text(fresh(root, page, prefix, precision, page.read_text()))


if __name__ == "__main__":
    main()
