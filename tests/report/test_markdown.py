"""The report.md subset converter: structure for what cnnlab writes, escaped text for everything else."""

from __future__ import annotations

import re

from cnnlab.report.markdown import inline, to_html


def test_text_is_escaped_everywhere():
    html = to_html(
        '# <b>x</b>\n\na <script>alert("1")</script> & b\n\n| <i> | `<u>` |\n|---|---|\n| 1 < 2 | **<s>** |\n'
    )
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html and "<u>" not in html
    assert "&lt;script&gt;" in html and "&amp; b" in html and "<code>&lt;u&gt;</code>" in html
    assert "<strong>&lt;s&gt;</strong>" in html and "1 &lt; 2" in html


def test_table_alignment_and_code_spans_with_pipes():
    html = to_html("| a | b | c |\n|---|---:|:-:|\n| `x|y` | 2 | 3 |\n| short |\n")
    assert '<th class="right">b</th>' in html and '<td class="center">3</td>' in html
    assert "<td><code>x|y</code></td>" in html  # the pipe inside a code span does not split the cell
    assert html.count("<tr>") == 3 and "<td>short</td><td" in html  # a short row is padded to the header


def test_code_blocks_keep_their_text_verbatim():
    html = to_html("```\ncnnlab train **x** <y>\n  indented\n```\n\nafter")
    assert "<pre><code>cnnlab train **x** &lt;y&gt;\n  indented</code></pre>" in html
    assert "<p>after</p>" in html


def test_inline_markup_and_images():
    seen = []

    def image(src: str) -> str | None:
        seen.append(src)
        return "data:image/png;base64,AAAA" if src == "a.png" else None

    assert inline("**bold** and *no worse* and `**not bold**`", image) == (
        "<strong>bold</strong> and <em>no worse</em> and <code>**not bold**</code>"
    )
    assert inline("2 * 3 * 4 and a*b*c", image) == "2 * 3 * 4 and a*b*c"  # arithmetic is not emphasis
    html = to_html("![the curves](a.png)\n\n![gone](b.png)", image)
    assert '<figure><img src="data:image/png;base64,AAAA" alt="the curves">' in html
    assert "[image b.png not found: gone]" in html and seen == ["a.png", "b.png"]


def test_links_follow_only_relative_targets():
    assert inline("[report](half/report.md)", lambda s: None) == '<a href="half/report.md">report</a>'
    assert inline("[site](https://example.com/x)", lambda s: None) == "site (https://example.com/x)"
    assert "href" not in inline("[js](javascript:alert(1))", lambda s: None)


def test_lists_headings_and_paragraphs():
    html = to_html("## Verdicts\n\n- one\n- two\n  continued\n\n1. first\n2. second\n\nline one\nline two\n")
    assert '<h2 id="verdicts">Verdicts</h2>' in html
    assert "<ul><li>one</li><li>two continued</li></ul>" in html
    assert "<ol><li>first</li><li>second</li></ol>" in html
    assert "<p>line one line two</p>" in html


def test_every_committed_report_md_converts_without_raw_markup(tmp_path):
    from tests.conftest import REPO

    for md in sorted((REPO / "docs" / "reproduce").glob("*/report.md")):
        html = to_html(md.read_text(), lambda s: "data:image/png;base64,AAAA")
        assert "<table>" in html and "<h2" in html, md
        assert "**" not in re.sub(r"<code[^>]*>.*?</code>", "", html, flags=re.S), md  # every bold converted
        # Every pipe-table line of the source became a row: none is left as paragraph text.
        assert not any(p.startswith("<p>|") for p in html.splitlines()), md
