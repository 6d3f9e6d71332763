"""`cnnlab report`: the page of a real run and of a committed experiment, parsed back with html.parser."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cnnlab.cli import main

# Void elements have no end tag; every other element the page opens it must close.
_VOID = {"meta", "link", "img", "br", "hr", "input", "col", "area", "base", "source", "wbr"}


class _Page(HTMLParser):
    """The page's tags (checked balanced), its URLs (src/href) and its visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._in_style = False
        self.style = ""

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.append((tag, dict(attrs)))
        if tag not in _VOID:
            self.stack.append(tag)
        self._in_style = tag == "style"

    def handle_endtag(self, tag):  # noqa: ANN001
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        self._in_style = False

    def handle_data(self, data):  # noqa: ANN001
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)

    def urls(self) -> list[str]:
        return [v or "" for _, a in self.tags for k, v in a.items() if k in ("src", "href", "action", "poster")]

    def images(self) -> list[str]:
        return [a.get("src") or "" for t, a in self.tags if t == "img"]

    def visible(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.text))


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert not page.problems and not page.stack, (page.problems, page.stack)
    return page


def check_self_contained(page: _Page) -> None:
    """No script, no external URL anywhere, every image a data URI holding a PNG."""
    assert not any(t in ("script", "iframe", "object", "embed") for t, _ in page.tags)
    for url in page.urls():
        assert url.startswith("data:") or not re.match(r"[a-z][a-z0-9+.-]*:|//", url, re.I), url
    assert "url(" not in page.style and "@import" not in page.style
    for src in page.images():
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def embedded(page: _Page) -> list[bytes]:
    return [base64.b64decode(s.split(",", 1)[1]) for s in page.images()]


def test_run_page(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    html = run_dir / "report.html"  # the default --out
    assert out.startswith(f"run report written to {html} (")
    page = parse(html)
    check_self_contained(page)
    text = page.visible()
    assert 'model = "lenet5"' in text and "epochs = 1" in text  # the recipe, escaped and readable
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{100 * summary['test_top1']:.2f}%" in text
    env = json.loads((run_dir / "env.json").read_text())
    assert env["git_sha"] in text and env["torch"] in text
    # The curves are the run's own PNG, byte for byte.
    assert (run_dir / "curves.png").read_bytes() in embedded(page)
    # No eval-*.json in a training run: the section says how to get it.
    assert f"cnnlab eval {run_dir}" in text
    # The per-layer table is counted on meta; its total must match the weights the run actually saved.
    from safetensors import safe_open

    with safe_open(str(next((run_dir / "checkpoints").glob("best-*.safetensors"))), "pt") as f:
        saved = sum(f.get_tensor(k).numel() for k in f.keys())  # noqa: SIM118 - safe_open is no dict
    assert f"params: {saved:,} (" in text
    assert "on the meta device" in text and "stages.1.0" in text
    assert not list(run_dir.glob(".report.html*"))  # the atomic write left no temporary file


def test_run_page_with_evaluation(evaluated_run):
    assert main(["report", str(evaluated_run), "--out", str(evaluated_run / "r.html")]) == 0
    page = parse(evaluated_run / "r.html")
    check_self_contained(page)
    report = json.loads((evaluated_run / "eval-test-none.json").read_text())
    text = page.visible()
    for name, acc in report["per_class"].items():
        assert re.search(rf"{re.escape(name)}\s*{'-' if acc is None else re.escape(f'{100 * acc:.2f}%')}", text)
    assert (evaluated_run / "eval-test-none-confusion.png").read_bytes() in embedded(page)
    assert "cnnlab eval" not in text  # the note is only for runs without an evaluation


def test_curves_drawn_from_metrics_without_writing_into_the_run(run_dir, tmp_path):
    (run_dir / "curves.png").unlink()
    (run_dir / "env.json").unlink()
    before = sorted(p.name for p in run_dir.rglob("*"))
    out = tmp_path / "elsewhere" / "page.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # the report only reads the run
    page = parse(out)
    check_self_contained(page)
    text = page.visible()
    assert "drawn here from metrics.csv" in text and len(page.images()) == 1
    assert "no env.json" in text


def test_experiment_page(experiment_dir, capsys):
    out = experiment_dir / "page.html"
    assert main(["report", str(experiment_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"experiment report written to {out} (")
    page = parse(out)
    check_self_contained(page)
    text = page.visible()
    results = json.loads((experiment_dir / "results.json").read_text())
    for claim in results["claims"]:
        assert claim["text"] in text and claim["ours"] in text
    assert "agrees" in text and "does not agree" in text and "inconclusive (within seed noise)" in text
    # Every image report.md names is embedded, byte for byte, and nothing else.
    named = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (experiment_dir / "report.md").read_text())
    assert sorted(embedded(page)) == sorted((experiment_dir / n).read_bytes() for n in named)
    assert len(named) == 3
    # The verdict cells are coloured by verdict.
    classes = [a.get("class") for t, a in page.tags if t == "td" and (a.get("class") or "").startswith("verdict-")]
    assert sorted(classes) == sorted(
        {"a": "verdict-agrees", "d": "verdict-disagrees", "i": "verdict-inconclusive"}[c["verdict"][0]]
        for c in results["claims"]
    )
    assert "cnnlab reproduce half" in text  # the code block
    assert results["provenance"]["git_sha"] in text


def test_experiment_without_report_md_uses_results_json(experiment_dir, tmp_path):
    (experiment_dir / "report.md").unlink()
    out = tmp_path / "p.html"
    assert main(["report", str(experiment_dir), "--out", str(out)]) == 0
    page = parse(out)
    check_self_contained(page)
    text = page.visible()
    assert "no report.md" in text
    for claim in json.loads((experiment_dir / "results.json").read_text())["claims"]:
        assert claim["verdict"] in text
    assert len(page.images()) == 3  # the directory's PNGs


def test_report_md_cannot_reach_outside_its_directory(experiment_dir, tmp_path):
    (tmp_path / "secret.png").write_bytes((experiment_dir / "half.png").read_bytes())
    md = experiment_dir / "report.md"
    md.write_text(md.read_text() + "\n![outside](../secret.png)\n\n![gone](nothing.png)\n\n<script>alert(1)</script>\n")
    out = tmp_path / "p.html"
    assert main(["report", str(experiment_dir), "--out", str(out)]) == 0
    page = parse(out)
    check_self_contained(page)  # the <script> of report.md is text, not a tag
    assert "<script>alert(1)</script>" in page.visible()
    assert len(page.images()) == 3
    assert "../secret.png, which is not in" in page.visible() and "nothing.png, which is not in" in page.visible()


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_errors_are_one_line(tmp_path, run_dir, capsys):
    (tmp_path / "plain").mkdir()
    err = _error(capsys, ["report", str(tmp_path / "plain")])
    assert "is neither a run directory (recipe.toml" in err and "nor an experiment directory (results.json)" in err
    assert "does not exist" in _error(capsys, ["report", str(tmp_path / "missing")])
    (tmp_path / "file").write_text("x")
    assert "is a file" in _error(capsys, ["report", str(tmp_path / "file")])
    assert "cannot write" in _error(capsys, ["report", str(run_dir), "--out", str(tmp_path / "file" / "r.html")])
    assert "is a directory" in _error(capsys, ["report", str(run_dir), "--out", str(tmp_path)])
    assert not (run_dir / "report.html").exists()


def test_an_unreadable_summary_is_a_note_not_a_failure(run_dir):
    (run_dir / "summary.json").write_text("{not json")
    assert main(["report", str(run_dir)]) == 0
    text = parse(run_dir / "report.html").visible()
    assert "summary.json could not be read" in text and "no summary.json" not in text
    assert "lenet5" in text and "stages.1.0" in text  # the rest of the page stands


@pytest.mark.parametrize("bad", ["neither", "empty-results"])
def test_experiment_marker_must_hold_results(tmp_path, capsys, bad):
    d = tmp_path / "exp"
    d.mkdir()
    (d / "results.json").write_text("[1, 2]" if bad == "neither" else "")
    assert "results.json" in _error(capsys, ["report", str(d)])
