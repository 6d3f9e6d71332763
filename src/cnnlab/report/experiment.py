"""The page of one experiment directory (what `cnnlab reproduce NAME` wrote: results.json, report.md, PNGs).

report.md already holds the experiment's tables, plots and verdicts: it is rendered (markdown.py, every text
escaped, its images embedded from the directory), and the verdict cells are coloured. Without report.md the
page is built from results.json alone (the claims and their verdicts) plus the directory's PNGs. The machine
the experiment ran on (results.json's provenance) closes the page.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.report.html import IMAGE_TYPES, Page, cards, data_uri, figure, kv_table, table
from cnnlab.report.markdown import to_html

# The verdict words of cnnlab.experiments (runner.py): a table cell holding one of them gets its colour.
_VERDICT_CELL = re.compile(r"<td>(<strong>(agrees|does not agree|inconclusive[^<]*)</strong>)</td>")
_VERDICT_CLASS = {"agrees": "agrees", "does not agree": "disagrees"}


def _colour_verdicts(html: str) -> str:
    def sub(m: re.Match[str]) -> str:
        cls = _VERDICT_CLASS.get(m[2], "inconclusive")
        return f'<td class="verdict-{cls}">{m[1]}</td>'

    return _VERDICT_CELL.sub(sub, html)


def _image_resolver(root: Path, page: Page):  # noqa: ANN202 - a closure of markdown.ImageResolver's type
    """src -> a data URI of the directory's own image file; None (with a note) for anything else."""
    base = root.resolve()

    def resolve(src: str) -> str | None:
        path = (base / src).resolve()
        # Only images inside the experiment directory: a report.md cannot pull other files into the page.
        if path.suffix.lower() not in IMAGE_TYPES or not path.is_relative_to(base) or not path.is_file():
            page.notes.append(f"report.md names the image {src}, which is not in {root}")
            return None
        return data_uri(path)

    return resolve


def _from_results(page: Page, root: Path, results: dict[str, Any]) -> None:
    """No report.md: the claims from results.json and every PNG of the directory."""
    page.body.append(page.note("no report.md in the directory: the page is built from results.json"))
    claims = results.get("claims") or []
    if claims:
        rows = [[c.get("text", ""), c.get("ours", ""), c.get("published", ""), c.get("verdict", "")] for c in claims]
        html = table(["claim", "ours", "paper", "verdict"], rows)
        html = re.sub(
            r"<td>((agrees|does not agree|inconclusive)[^<]*)</td>",
            lambda m: f'<td class="verdict-{_VERDICT_CLASS.get(m[2], "inconclusive")}">{m[1]}</td>',
            html,
        )
        page.section("Verdicts", html)
    pngs = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_TYPES and p.is_file())
    if pngs:
        page.section("Plots", *(figure(p, p.name) for p in pngs))
    if isinstance(results.get("config"), dict):
        page.section("Config", kv_table(results["config"].items()))


def _headline(results: dict[str, Any]) -> str:
    """The verdicts counted, the seeds and the wall time, as the big numbers at the top."""
    claims = [c for c in results.get("claims") or [] if isinstance(c, dict)]
    verdicts = [str(c.get("verdict", "")) for c in claims]
    pairs = [
        ("claims agree", str(sum(v.startswith("agrees") for v in verdicts))),
        ("do not agree", str(sum(v.startswith("does not agree") for v in verdicts))),
        ("inconclusive", str(sum(v.startswith("inconclusive") for v in verdicts))),
    ]
    config = results.get("config") if isinstance(results.get("config"), dict) else {}
    if "seeds" in config:
        pairs.append(("seeds", str(config["seeds"])))
    wall = (results.get("timing") or {}).get("wall_seconds") if isinstance(results.get("timing"), dict) else None
    if isinstance(wall, (int, float)):
        pairs.append(("wall time", f"{int(wall) // 60}:{int(wall) % 60:02d}"))
    return cards(pairs) if claims else ""


def build(root: Path) -> Page:
    """The page of the experiment directory `root` (see the module docstring)."""
    path = root / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CnnlabError(f"{path} could not be read as JSON ({type(e).__name__}: {e})") from None
    if not isinstance(results, dict):
        raise CnnlabError(f"{path} holds no experiment's results (a JSON object was expected)")
    name = str(results.get("experiment") or root.name)
    page = Page(kind="experiment", title=f"{name}: {results.get('claim', '')}".rstrip(": "))
    page.subtitle = f"experiment directory {root}"
    report = root / "report.md"
    page.body.append(_headline(results))
    if report.is_file():
        md = report.read_text()
        # report.md's first line is the same title as the page's header: not shown twice.
        md = re.sub(r"\A\s*# [^\n]*\n", "", md, count=1)
        html = _colour_verdicts(to_html(md, image=_image_resolver(root, page)))
        page.body.append(f'<section class="report-md">{html}</section>')
        for text in dict.fromkeys(page.notes):  # images report.md names that are not there
            page.body.append(f'<p class="note">{escape(text)}</p>')
    else:
        _from_results(page, root, results)
    prov = results.get("provenance")
    if isinstance(prov, dict) and prov:
        page.section("Environment (results.json)", kv_table(prov.items()))
    else:
        page.section("Environment", page.note("results.json records no provenance (machine, versions, git sha)"))
    return page
