"""The page around a report: one self-contained HTML file (inline CSS, images as data URIs, no script, no
external request), and the small builders its sections share. Every text that comes from a file is escaped
here or in markdown.py; nothing read from a run or an experiment is ever placed in the page raw."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from cnnlab.report.markdown import slug

# The image kinds a browser shows from a data URI; anything else a report names is not embedded.
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}

_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da;
        --good: #1a7f37; --good-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --meh: #9a6700; --meh-bg: #fff8c5; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f4; color: var(--fg); line-height: 1.5;
       font: 15px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", Arial, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 24px auto; background: #fff; padding: 28px 40px 40px;
       border: 1px solid var(--line); border-radius: 8px; }
header.top { border-bottom: 3px solid var(--accent); margin-bottom: 18px; padding-bottom: 10px; }
header.top .kind { color: var(--accent); font-weight: 600; font-size: 13px; letter-spacing: .06em;
                   text-transform: uppercase; }
h1 { font-size: 26px; margin: 4px 0 6px; line-height: 1.25; }
h2 { font-size: 20px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
p { margin: 8px 0; }
.sub { color: var(--muted); margin: 0; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88em; background: var(--soft);
       padding: 1px 4px; border-radius: 4px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
      overflow-x: auto; font-size: 13px; line-height: 1.4; }
pre code { background: none; padding: 0; font-size: inherit; }
pre.columns { column-count: 2; column-gap: 32px; }
.table-wrap { overflow-x: auto; margin: 10px 0 14px; }
table { border-collapse: collapse; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 4px 9px; vertical-align: top; text-align: left; }
thead th { background: var(--soft); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.right, th.right { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.center, th.center { text-align: center; }
table.kv th { background: var(--soft); font-weight: 600; white-space: nowrap; }
table.kv td { font-variant-numeric: tabular-nums; min-width: 120px; }
td.verdict-agrees { background: var(--good-bg) !important; color: var(--good); }
td.verdict-disagrees { background: var(--bad-bg) !important; color: var(--bad); }
td.verdict-inconclusive { background: var(--meh-bg) !important; color: var(--meh); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0 4px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px;
        background: var(--soft); }
.card .v { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .k { color: var(--muted); font-size: 12.5px; }
figure { margin: 14px 0; }
.side { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.side figure { margin-top: 10px; flex: 0 1 560px; }
figure img, img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.note { border-left: 4px solid var(--meh); background: var(--meh-bg); padding: 6px 12px; margin: 10px 0;
        border-radius: 0 6px 6px 0; font-size: 14px; }
.missing { color: var(--bad); }
.bar { display: inline-block; height: 10px; background: var(--accent); border-radius: 2px; vertical-align: middle; }
footer { color: var(--muted); font-size: 12.5px; margin-top: 34px; border-top: 1px solid var(--line);
         padding-top: 8px; }
"""


def data_uri(path: Path) -> str:
    """The file as a base64 data URI: the page carries its images, so it can be mailed or archived alone."""
    mime = IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


@dataclass
class Page:
    """A report page being built: sections of HTML (already escaped) and the notes on what was left out."""

    kind: str  # "run" or "experiment": the small caps above the title
    title: str
    subtitle: str = ""
    body: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # plain text, escaped when rendered

    def section(self, heading: str, *parts: str) -> None:
        self.body.append(f'<section><h2 id="{slug(heading)}">{escape(heading)}</h2>{"".join(parts)}</section>')

    def note(self, text: str) -> str:
        """A visible remark (a file that is missing, a figure computed rather than read); also listed at the end."""
        self.notes.append(text)
        return f'<p class="note">{escape(text)}</p>'

    def render(self, source: Path, generated_by: str) -> str:
        sub = f'<p class="sub">{escape(self.subtitle)}</p>' if self.subtitle else ""
        foot = f"{escape(generated_by)} from {escape(str(source))}; every figure is read from the directory's files"
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            # No request may leave the page: not even a favicon lookup, whatever a file said.
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            "style-src 'unsafe-inline'\">\n"
            '<link rel="icon" href="data:,">\n'
            f"<title>{escape(self.title)}</title>\n<style>{_CSS}</style></head>\n<body><main>\n"
            f'<header class="top"><div class="kind">cnnlab {escape(self.kind)} report</div>'
            f"<h1>{escape(self.title)}</h1>{sub}</header>\n" + "\n".join(self.body) + f"\n<footer>{foot}</footer>\n"
            "</main></body></html>\n"
        )


def kv_table(pairs: Iterable[tuple[str, object]], per_row: int = 2) -> str:
    """A key/value table (the environment, the summary), `per_row` pairs side by side to keep the page short;
    keys are shown with spaces for underscores (`git_sha` -> `git sha`)."""
    cells = [f"<th>{escape(str(k).replace('_', ' '))}</th><td>{escape(_text(v))}</td>" for k, v in pairs]
    rows = "".join("<tr>" + "".join(cells[i : i + per_row]) + "</tr>" for i in range(0, len(cells), per_row))
    return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'


def table(head: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()) -> str:
    """A plain data table; `right` are the numeric columns (right-aligned)."""
    right = set(right)

    def cls(i: int) -> str:
        return ' class="right"' if i in right else ""

    th = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{escape(_text(c))}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f'<div class="table-wrap"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def cards(pairs: Iterable[tuple[str, str]]) -> str:
    """The headline figures as big numbers (test top-1, ...)."""
    items = "".join(
        f'<div class="card"><div class="v">{escape(v)}</div><div class="k">{escape(k)}</div></div>' for k, v in pairs
    )
    return f'<div class="cards">{items}</div>'


def figure(path: Path, caption: str) -> str:
    img = f'<img src="{data_uri(path)}" alt="{escape(caption)}">'
    return f"<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>"


def _text(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)
