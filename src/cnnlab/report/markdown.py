"""A small, safe Markdown-to-HTML converter for the subset cnnlab's own report.md files use.

Blocks: ATX headings, paragraphs, pipe tables (with `---:` alignment), fenced code blocks, `-`/`*`/`1.` lists.
Inline: `code`, **bold**, *emphasis*, images and links. Every piece of text is HTML-escaped, so a report can
never inject markup; raw HTML in the source shows as text. Images go through a callback that returns a data
URI (the page stays self-contained) or None (the image is missing: its alt text is shown with a note); a link
keeps its href only when it is relative, so the page never points at another site by itself.

Not CommonMark: no nesting of lists, no setext headings, no reference links. The report writer
(cnnlab.experiments) emits only the subset above; anything else comes through as escaped text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape

ImageResolver = Callable[[str], "str | None"]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_IMAGE_LINE = re.compile(r"^\s*!\[[^\]]*\]\([^)\s]+\)\s*$")

# Inline tokens, tried left to right at each position: code spans first (nothing inside them is markup).
_INLINE = re.compile(
    r"(?P<code>(`+)(?P<code_text>.+?)\2)"
    r"|(?P<image>!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\))"
    r"|(?P<link>\[(?P<label>[^\]]+)\]\((?P<href>[^)\s]+)\))"
    r"|(?P<bold>\*\*(?P<bold_text>.+?)\*\*)"
    r"|(?P<em>(?<![\w*])\*(?=\S)(?P<em_text>[^*]+?)(?<=\S)\*(?![\w*]))"
)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def inline(text: str, image: ImageResolver) -> str:
    """One line (or table cell) of Markdown as escaped HTML."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[pos : m.start()], quote=False))
        pos = m.end()
        if m["code"]:
            out.append(f"<code>{escape(m['code_text'].strip(), quote=False)}</code>")
        elif m["image"]:
            out.append(_image(m["alt"], m["src"], image))
        elif m["link"]:
            label = inline(m["label"], image)
            href = m["href"]
            # A relative link names a file of the report's own directory; an absolute one is shown, not followed.
            out.append(
                f'<a href="{escape(href)}">{label}</a>' if not _SCHEME.match(href) else f"{label} ({escape(href)})"
            )
        elif m["bold"]:
            out.append(f"<strong>{inline(m['bold_text'], image)}</strong>")
        else:
            out.append(f"<em>{inline(m['em_text'], image)}</em>")
    out.append(escape(text[pos:], quote=False))
    return "".join(out)


def _image(alt: str, src: str, image: ImageResolver) -> str:
    uri = image(src)
    if uri is None:
        return f'<span class="missing">[image {escape(src)} not found: {escape(alt)}]</span>'
    return f'<img src="{escape(uri)}" alt="{escape(alt)}">'


def _cells(line: str) -> list[str]:
    """A pipe-table row's cells; a `|` inside a code span or escaped as `\\|` does not split."""
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells, cur, in_code, i = [], [], False, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] == "|":
            cur.append("|")
            i += 2
            continue
        if c == "`":
            in_code = not in_code
        if c == "|" and not in_code:
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    cells.append("".join(cur).strip())
    return cells


def _table(lines: list[str], image: ImageResolver) -> str:
    head, rule, body = _cells(lines[0]), _cells(lines[1]), [_cells(x) for x in lines[2:]]
    align = ["right" if r.endswith(":") and not r.startswith(":") else "center" if r.startswith(":") and
             r.endswith(":") else "" for r in rule]  # fmt: skip

    def cell(tag: str, i: int, text: str) -> str:
        a = align[i] if i < len(align) else ""
        return f"<{tag}{f' class={chr(34)}{a}{chr(34)}' if a else ''}>{inline(text, image)}</{tag}>"

    rows = ["<thead><tr>" + "".join(cell("th", i, c) for i, c in enumerate(head)) + "</tr></thead>", "<tbody>"]
    for r in body:
        r = (r + [""] * len(head))[: len(head)]  # a short row is padded, a long one cut, as GFM does
        rows.append("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>")
    rows.append("</tbody>")
    return '<div class="table-wrap"><table>' + "".join(rows) + "</table></div>"


def to_html(md: str, image: ImageResolver = lambda src: None) -> str:
    """Markdown (the subset in this module's docstring) -> an HTML fragment; `image(src)` embeds images."""
    lines = md.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + inline(" ".join(s.strip() for s in para), image) + "</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
        elif fence := _FENCE.match(line):
            flush()
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(fence[1][0] * len(fence[1])):
                end += 1
            cls = f' class="language-{escape(fence[2])}"' if fence[2] else ""
            out.append(f"<pre><code{cls}>{escape(chr(10).join(lines[i + 1 : end]), quote=False)}</code></pre>")
            i = end + 1
        elif h := _HEADING.match(line):
            flush()
            n = len(h[1])
            out.append(f'<h{n} id="{slug(h[2])}">{inline(h[2], image)}</h{n}>')
            i += 1
        elif "|" in line and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]) and "-" in lines[i + 1]:
            flush()
            end = i + 2
            while end < len(lines) and lines[end].strip() and "|" in lines[end]:
                end += 1
            out.append(_table(lines[i:end], image))
            i = end
        elif _BULLET.match(line) or _NUMBERED.match(line):
            flush()
            pattern, tag = (_BULLET, "ul") if _BULLET.match(line) else (_NUMBERED, "ol")
            items = []
            while i < len(lines) and (m := pattern.match(lines[i])):
                items.append(m[1])
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():  # a wrapped item
                    items[-1] += " " + lines[i].strip()
                    i += 1
            out.append(f"<{tag}>" + "".join(f"<li>{inline(t, image)}</li>" for t in items) + f"</{tag}>")
        elif _IMAGE_LINE.match(line):  # an image on its own line is a figure, not a paragraph's word
            flush()
            out.append(f"<figure>{inline(line.strip(), image)}<figcaption>{_alt(line)}</figcaption></figure>")
            i += 1
        else:
            para.append(line)
            i += 1
    flush()
    return "\n".join(out)


def _alt(line: str) -> str:
    m = re.search(r"!\[([^\]]*)\]", line)
    return escape(m[1], quote=False) if m else ""


def slug(text: str) -> str:
    """A heading as an id (the page's anchors)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
