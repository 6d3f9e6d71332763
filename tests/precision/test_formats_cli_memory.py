"""`cnnlab formats` and `cnnlab analyze --dtype`: the formats' table, and memory at a format."""

from __future__ import annotations

import json

import pytest

from cnnlab.analysis import analyze
from cnnlab.cli import main
from cnnlab.precision.memory import at_format


def test_formats_table_lists_each_format_with_its_range(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    for name in ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fixed<4,12>", "binary"):
        assert f"\n{name} " in out
    fp16 = next(line for line in out.splitlines() if line.startswith("fp16 "))
    assert "65504" in fp16 and "5.96e-08" in fp16


def test_formats_of_given_names_and_a_bad_one(capsys):
    assert main(["formats", "fixed:2,14"]) == 0
    assert "fixed<2,14>" in capsys.readouterr().out
    assert main(["formats", "fp16", "fp61"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean fp16" in err[0]


@pytest.mark.parametrize(("fmt", "per_value"), [("fp16", 2), ("bf16", 2), ("fp8_e4m3", 1), ("fixed<4,12>", 2),
                                                ("binary", 1 / 8)])  # fmt: skip
def test_memory_at_a_format_scales_what_it_stores_and_keeps_fp32_what_stays(fmt, per_value):
    base = analyze("resnet18", train=True)
    rep = at_format(base, fmt)
    params = base.total_params
    assert rep.param_bytes == pytest.approx(params * per_value, abs=1)
    grad_per_value = 4 if fmt == "binary" else per_value  # BinaryConnect's gradients are real-valued
    assert rep.grad_bytes == pytest.approx(base.trainable_params * grad_per_value, abs=1)
    assert rep.total_activation_bytes == pytest.approx(base.total_activation_bytes * per_value / 4, abs=1)
    assert rep.buffer_bytes == base.buffer_bytes and rep.optimizer_state_bytes == base.optimizer_state_bytes
    assert rep.master_bytes == 4 * base.trainable_params
    assert rep.training_bytes == (rep.saved_activation_bytes + rep.param_bytes + rep.buffer_bytes + rep.grad_bytes
                                  + rep.optimizer_state_bytes + rep.master_bytes)  # fmt: skip
    assert sum(r.activation_bytes for r in rep.rows) <= sum(
        r.activation_bytes for r in base.rows
    ) * per_value / 4 + len(rep.rows)
    assert at_format(base, "fp32") is base


def test_analyze_cli_dtype(capsys):
    assert main(["analyze", "lenet5", "--dtype", "fp16", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["dtype"] == "fp16, emulated"
    assert d["totals"]["param_bytes"] == 2 * d["totals"]["params"]
    assert d["totals"]["master_bytes"] == 4 * d["totals"]["trainable_params"]
    assert main(["analyze", "lenet5", "--dtype", "fp17"]) == 2
    assert "unknown number format" in capsys.readouterr().err
