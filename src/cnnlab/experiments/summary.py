"""The results table of the README and docs/reproduce.md, generated from the committed full runs.

One row per judged claim; an experiment's exact cost claims fold into one row (they agree or not together).
`python -m cnnlab.experiments.summary` rewrites both tables in place; tests/experiments/test_summary.py fails
when a committed table no longer matches its results.json files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

START, END = "<!-- results: generated from docs/reproduce/*/results.json -->", "<!-- /results -->"
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


def replace_table(text: str, new: str) -> str:
    pattern = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError("no generated results table in this file")
    return pattern.sub(lambda _: f"{START}\n{new}\n{END}", text)


def targets(root: Path) -> dict[Path, str]:
    """Each page holding the table, with the prefix its links need."""
    return {root / "README.md": "docs/reproduce/", root / "docs" / "reproduce.md": "reproduce/"}


def main(root: Path = Path(".")) -> None:
    from cnnlab.experiments import EXPERIMENTS

    docs = root / "docs" / "reproduce"
    for page, prefix in targets(root).items():
        page.write_text(replace_table(page.read_text(), table(docs, list(EXPERIMENTS), prefix)))


if __name__ == "__main__":
    main()
