"""The README's and docs/reproduce.md's results tables are the committed results.json files, regenerated."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.experiments import EXPERIMENTS
from cnnlab.experiments.summary import END, START, replace_table, table, targets

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page", list(targets(ROOT)), ids=lambda p: p.name)
def test_committed_table_is_current(page: Path):
    if not page.is_file():
        pytest.skip("not a source checkout")
    text = page.read_text()
    fresh = replace_table(text, table(ROOT / "docs" / "reproduce", list(EXPERIMENTS), targets(ROOT)[page]))
    assert text == fresh, f"{page.name}: stale results table; run python -m cnnlab.experiments.summary"


def test_a_page_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="no generated results table"):
        replace_table("# nothing here\n", "| a |")
    assert replace_table(f"x\n{START}\nold\n{END}\ny", "new") == f"x\n{START}\nnew\n{END}\ny"
