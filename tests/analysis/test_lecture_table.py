"""The lecture's AlexNet table at 3x227x227, every cell (EECS 498 Lecture 8; references.toml, alexnet_lecture)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from torch import nn

import cnnlab
from cnnlab import references
from cnnlab.analysis import analyze
from tests.analysis.conftest import tv_model

LECTURE_KINDS = ("Conv2d", "MaxPool2d", "Flatten", "Linear")


def _lecture() -> list[dict]:
    return [
        {
            "layer": layer,
            "shape": tuple(row["output"]),
            "kb": str(row["memory_kb"]),  # as printed: its decimals are the precision to check
            "params": row["params"],
            "macs": row["macs"],
            "comparisons": row.get("comparisons"),
        }
        for layer, row in references.published("alexnet_lecture").items()
    ]


def _check(rows, lecture) -> None:
    assert [r.kind for r in rows] == ["Conv2d", "MaxPool2d"] * 2 + ["Conv2d"] * 3 + ["MaxPool2d", "Flatten"] + [
        "Linear"
    ] * 3
    for row, ref in zip(rows, lecture, strict=True):
        assert row.output_shape[1:] == ref["shape"], ref["layer"]
        decimals = len(ref["kb"].split(".")[1]) if "." in ref["kb"] else 0
        assert round(row.activation_bytes / 1024, decimals) == float(ref["kb"]), ref["layer"]
        assert row.params == ref["params"], ref["layer"]
        assert row.macs == ref["macs"], ref["layer"]
        if ref["comparisons"] is not None:  # pool1: output elements x k x k, counted as FLOPs
            assert row.flops == ref["comparisons"]


def test_torchvision_alexnet_reproduces_every_cell():
    tv = tv_model("alexnet")
    # torchvision flattens functionally inside forward; the lecture lists flatten as a layer of its own.
    model = nn.Sequential(
        OrderedDict(features=tv.features, avgpool=tv.avgpool, flatten=nn.Flatten(1), classifier=tv.classifier)
    )
    rep = analyze(model, (3, 227, 227))
    lecture = _lecture()
    assert len(lecture) == 12
    _check([r for r in rep.layers() if r.kind in LECTURE_KINDS], lecture)
    # names: the table's rows are the module paths
    assert [r.name for r in rep.layers() if r.kind == "Conv2d"] == [f"features.{i}" for i in (0, 3, 6, 8, 10)]
    assert rep.total_params == 61_100_840
    assert rep.total_macs == sum(x["macs"] for x in lecture)


def test_cnnlab_alexnet_reproduces_every_cell():
    if "alexnet" not in cnnlab.list_models():
        pytest.skip("cnnlab's alexnet is not in the zoo yet")
    rep = analyze("alexnet", (3, 227, 227))
    rows = [r for r in rep.layers() if r.kind in LECTURE_KINDS]
    if not any(r.kind == "Flatten" for r in rows):
        pytest.skip("cnnlab's alexnet flattens functionally")
    _check(rows, _lecture())


def test_to_text_shows_the_lecture_columns():
    rep = analyze(tv_model("alexnet"), (3, 227, 227))
    text = rep.to_text()
    header = text.splitlines()[1]
    for col in ("layer", "output (CxHxW)", "memory KB", "params", "MACs"):
        assert col in header
    conv1 = next(line for line in text.splitlines() if line.startswith("features.0 "))
    for cell in ("64x56x56", "784.00", "23,296", "72,855,552"):
        assert cell in conv1
