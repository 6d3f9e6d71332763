"""The in-repo figures (the zoo's `published` tables and cnnlab/references.toml) agree with ../shared/REFERENCES.md.

The other tests read the in-repo figures only, so they run in a clone without ../shared; this one (skipped there)
keeps the two from drifting apart: every figure that both hold must be equal.
"""

from __future__ import annotations

import re

import pytest

from cnnlab import references
from cnnlab.registry import get_entry
from tests.conftest import torchvision_table


@pytest.fixture(scope="module")
def text(shared_dir) -> str:
    return (shared_dir / "REFERENCES.md").read_text()


def _section(text: str, number: int) -> str:
    start = text.index(f"## {number}.")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _rows(section: str) -> list[list[str]]:
    """Cells of the Markdown table rows of `section`, header and separator rows dropped."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|") and not re.fullmatch(r"[|\-: ]+", line.strip())
    ]
    return rows[1:]


def _int(cell: str) -> int:
    return int(cell.replace(",", ""))


def _numbers(text: str) -> list[int]:
    """The comma-grouped integers of `text` (61,706; 4,231,976), in order."""
    return [_int(n) for n in re.findall(r"\d{1,3}(?:,\d{3})+", text)]


def _line(section: str, start: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(f"| {start}"))


def _published(name: str):
    return get_entry(name).family.published[name]


def test_section1_torchvision_metadata(text):
    md = {r[0]: (_int(r[1]), float(r[2]), int(r[3]), float(r[4])) for r in _rows(_section(text, 1))}
    assert len(md) == 40
    assert torchvision_table() == md


def test_section1_note_resnet_v1_macs(text):
    note = re.search(r"the paper's v1 \(stride on the first 1x1\) gives ([\d.]+) / ([\d.]+) / ([\d.]+)", text)
    assert note, "REFERENCES.md §1 no longer states the v1 GMACs"
    md = [float(g) for g in note.groups()]
    assert [_published(f"resnet{d}_paper").gmacs for d in (50, 101, 152)] == md


def test_section2_parameter_counts(text):
    s2 = _section(text, 2)
    md = {"lenet5": _numbers(_line(s2, "LeNet-5"))[0]}
    cifar = [f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202)]
    md |= dict(zip(cifar, _numbers(_line(s2, "ResNet-20")), strict=True))
    md |= {f"plain{d}": md[f"resnet{d}"] for d in (20, 32, 44, 56, 110)}  # "the ResNets above without shortcuts"
    md |= dict(zip(("se_resnet50", "se_resnext50_32x4d"), _numbers(_line(s2, "SE-ResNet-50")), strict=True))
    md["mobilenet_v1"] = _numbers(_line(s2, "MobileNet v1"))[0]
    md |= dict(zip(("inception_v4", "inception_resnet_v2"), _numbers(_line(s2, "Inception-v4")), strict=True))
    md["preact_resnet50"] = _numbers(_line(s2, "pre-activation ResNets"))[0]  # timm's resnetv2_50
    assert {name: _published(name).params for name in md} == md


def test_section2_mobilenet_v1_table6(text):
    row = _line(_section(text, 2), "MobileNet v1")
    mmacs = [int(m) for m in re.search(r"at 224: (\d+)M / (\d+)M / (\d+)M / (\d+)M MACs", row).groups()]
    top1 = float(re.search(r"top-1 ([\d.]+)% at 1.0-224", row).group(1))
    names = ["mobilenet_v1", "mobilenet_v1_075", "mobilenet_v1_050", "mobilenet_v1_025"]
    assert [round(_published(n).gmacs * 1000) for n in names] == mmacs
    assert _published("mobilenet_v1").top1 == top1


def test_section3_lecture_table(text):
    md = {}
    for layer, shape, kb, params, macs in _rows(_section(text, 3)):
        row = {
            "output": [int(s) for s in shape.split(" x ")],
            "memory_kb": float(kb),
            "params": _int(params),
            "macs": _int(macs.split()[0]),
        }
        if "(" in macs:
            row["comparisons"] = _int(macs.split("(")[1].split()[0])
        md[layer.split()[0]] = row
    assert references.published("alexnet_lecture") == md
