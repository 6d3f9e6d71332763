"""REFERENCES.md (in ../shared) is the judge: every published parameter count there, read from the file itself."""

from __future__ import annotations

import re

import pytest
import torch

import cnnlab

# REFERENCES.md §1 notes: torchvision's GoogLeNet figure is without its two auxiliary heads.
COUNTED_AS = {"googlenet": {"aux_logits": False}}


def _params(name: str, num_classes: int = 1000, **overrides) -> int:
    with torch.device("meta"):
        model = cnnlab.create_model(name, num_classes=num_classes, **overrides)
    return sum(p.numel() for p in model.parameters())


def _section(text: str, number: int) -> str:
    start = text.index(f"## {number}.")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


@pytest.fixture(scope="module")
def references(shared_dir) -> str:
    return (shared_dir / "REFERENCES.md").read_text()


def _table1(references: str) -> list[tuple[str, int, float, int, float]]:
    rows = []
    for line in _section(references, 1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[\d,]+", cells[1]):
            rows.append((cells[0], int(cells[1].replace(",", "")), float(cells[2]), int(cells[3]), float(cells[4])))
    return rows


def test_table1_is_parsed(references):
    assert len(_table1(references)) >= 40


def test_table1_models_exist_with_exact_params_and_metadata(references):
    failures = []
    for name, params, gmacs, crop, top1 in _table1(references):
        if name not in cnnlab.list_models():
            failures.append(f"{name}: not registered")
            continue
        got = _params(name, **COUNTED_AS.get(name, {}))
        info = cnnlab.model_info(name)
        if got != params:
            failures.append(f"{name}: {got:,} params, published {params:,}")
        if info.input_size[1:] != (crop, crop):
            failures.append(f"{name}: default input {info.input_size}, eval crop {crop}")
        if info.published.gmacs != gmacs or info.published.top1 != top1:
            failures.append(f"{name}: model_info published {info.published}, table {gmacs} GMACs {top1}%")
    assert not failures, "\n".join(failures)


def _numbers(text: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\d{1,3}(?:,\d{3})+", text)]


def _row(section: str, start: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(f"| {start}"))


def test_table2_exact_counts(references):
    s2 = _section(references, 2)
    checks = [("lenet5", {"num_classes": 10}, _numbers(_row(s2, "LeNet-5"))[0])]
    cifar = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"]
    checks += [(n, {"num_classes": 10}, v) for n, v in zip(cifar, _numbers(_row(s2, "ResNet-20")))]
    se = _numbers(_row(s2, "SE-ResNet-50"))
    checks += [("se_resnet50", {}, se[0]), ("se_resnext50_32x4d", {}, se[1])]
    checks += [("mobilenet_v1", {}, _numbers(_row(s2, "MobileNet v1"))[0])]
    inc = _numbers(_row(s2, "Inception-v4"))
    checks += [("inception_v4", {}, inc[0]), ("inception_resnet_v2", {}, inc[1])]
    failures = []
    for name, kw, want in checks:
        if name not in cnnlab.list_models():
            failures.append(f"{name}: not registered")
        elif (got := _params(name, **kw)) != want:
            failures.append(f"{name}: {got:,} params, published {want:,}")
    assert not failures, "\n".join(failures)
