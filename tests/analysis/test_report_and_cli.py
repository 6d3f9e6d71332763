"""Report renderings (stable JSON schema, CSV, Markdown, depth) and the `analyze` / `compare` subcommands."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cnnlab.analysis import analyze
from cnnlab.cli import main
from cnnlab.cli.analyze import parse_input
from cnnlab.errors import CnnlabError
from tests.analysis.conftest import tv_model

TOTALS = {
    "params", "trainable_params", "macs", "flops", "activation_bytes", "peak_activation_bytes",
    "saved_activation_bytes", "param_bytes", "buffer_bytes", "grad_bytes", "optimizer", "optimizer_state_bytes",
    "training_bytes", "master_bytes",  # master_bytes: 0 unless at a narrower format (added, so still schema 1)
}  # fmt: skip
ROW_KEYS = {
    "name", "kind", "depth", "call", "calls", "leaf", "own", "input_shape", "output_shape", "params", "macs",
    "flops", "activation_bytes", "receptive_field", "jump", "kernel", "stride", "padding", "dilation", "groups",
    "self_params", "self_macs", "self_flops",
}  # fmt: skip


@pytest.fixture(scope="module")
def rep18():
    return analyze(tv_model("resnet18"))


def test_json_schema_is_stable(rep18):
    d = json.loads(rep18.to_json())
    assert d["schema"] == "cnnlab.analysis/1"
    assert set(d) == {
        "schema", "model", "input_shape", "batch_size", "dtype", "mode", "totals", "receptive_field_px",
        "jump_px", "global_context", "unsupported", "warnings", "rows",
    }  # fmt: skip
    assert set(d["totals"]) == TOTALS
    assert all(set(r) == ROW_KEYS for r in d["rows"])
    assert d["totals"]["macs"] == rep18.total_macs and d["receptive_field_px"] == 435
    assert d["rows"][0]["name"] == "" and d["rows"][0]["depth"] == 0


@pytest.mark.parametrize("depth", [0, 1, 2, 3, None])
def test_table_rows_sum_to_the_totals_at_every_depth(rep18, depth):
    rows = rep18.layers(depth)
    assert sum(r.macs for r in rows) == rep18.total_macs
    assert sum(r.flops for r in rows) == rep18.flops
    assert sum(r.params for r in rows) == rep18.total_params
    if depth == 0:
        assert len(rows) == 1 and rows[0].name == ""


def test_own_rows_hold_a_containers_functional_ops(rep18):
    own = [r for r in rep18.layers() if r.own]
    # torchvision's BasicBlock adds the shortcut in its forward: a FLOP cost, not a module of its own
    assert own and all(r.kind == "BasicBlock (own ops)" and r.macs == 0 and r.flops > 0 for r in own)


def test_csv_and_markdown(rep18):
    rows = list(csv.DictReader(io.StringIO(rep18.to_csv())))
    assert len(rows) == len(rep18.layers())
    assert rows[0]["name"] == "conv1" and rows[0]["kernel"] == "7x7" and int(rows[0]["macs"]) == 118_013_952
    md = rep18.to_markdown(depth=1)
    assert "| layer | kind | output (CxHxW) | memory KB | params | MACs | RF |" in md
    assert md.count("\n| ") >= len(rep18.layers(1)) + 1


def test_text_depth_collapses(rep18):
    text = rep18.to_text(depth=1)
    assert "layer1 " in text and "layer1.0.conv1" not in text
    assert "receptive field of the last feature map: 435 px" in text


@pytest.mark.parametrize(
    ("text", "dims"),
    [("3x224x224", (3, 224, 224)), ("227", (3, 227, 227)), ("1x32x32", (1, 32, 32)), ("64x48", (3, 64, 48))],
)
def test_parse_input(text, dims):
    assert parse_input(text, 3) == dims


@pytest.mark.parametrize("bad", ["", "3xfoo", "3x0x4", "-3x4x4", "3x224x224x"])
def test_parse_input_rejects(bad):
    with pytest.raises(CnnlabError, match="--input"):
        parse_input(bad)


def test_cli_analyze_text_and_json(capsys):
    assert main(["analyze", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lenet5: input 1x1x32x32") and "61,706" in out
    assert main(["analyze", "lenet5", "--format", "json", "--batch", "2"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["batch_size"] == 2 and d["totals"]["params"] == 61_706
    assert main(["analyze", "lenet5", "--format", "csv", "--depth", "1"]) == 0
    assert capsys.readouterr().out.startswith("name,kind,depth")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["analyze", "lenet5", "--input", "1xbad"], "--input"),
        (["analyze", "lenet55"], "did you mean"),
        (["analyze", "lenet5", "--input", "1x8x8"], "smallest square input"),
        (["compare", "nosuchnet"], "unknown model"),
    ],
)
def test_cli_errors_are_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_cli_compare_with_plot(capsys, tmp_path):
    png = tmp_path / "chart.png"
    assert main(["compare", "lenet5", "resnet18", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "1.814" in out and "69.76" in out
    assert "left out of the chart (no published top-1): lenet5" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]  # no temp file left behind
