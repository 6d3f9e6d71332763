from __future__ import annotations

import re
import warnings

import pytest
import torch


def section(text: str, number: int) -> str:
    start = text.index(f"## {number}.")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def table_rows(text: str) -> list[list[str]]:
    """Cells of the Markdown table rows of `text` (header and separator rows dropped)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.fullmatch(r"[|\-: ]+", line.strip()):
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]


@pytest.fixture(scope="session")
def references(shared_dir) -> str:
    return (shared_dir / "REFERENCES.md").read_text()


def tv_model(name: str, **kwargs) -> torch.nn.Module:
    """A torchvision model built on the meta device (no weights allocated), in eval mode."""
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet/Inception init FutureWarnings
        model = tv.models.get_model(name, weights=None, **kwargs)
    return model.eval()
