"""The README's and docs/reproduce.md's results tables are the committed results.json files, regenerated."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.experiments.summary import END, START, fresh, replace_table, targets

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", targets(ROOT), ids=lambda t: f"{t[0].name}{'-precision' if t[2] else ''}")
def test_committed_table_is_current(target: tuple[Path, str, bool]):
    page, prefix, precision = target
    if not page.is_file():
        pytest.skip("not a source checkout")
    text = page.read_text()
    assert text == fresh(ROOT, page, prefix, precision, text), (
        f"{page.name}: stale results table; run python -m cnnlab.experiments.summary"
    )


def test_a_page_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="no generated results table"):
        replace_table("# nothing here\n", "| a |")
    assert replace_table(f"x\n{START}\nold\n{END}\ny", "new") == f"x\n{START}\nnew\n{END}\ny"
