"""`cnnlab analyze MODEL --dtype FMT` and precision.memory.at_format: what is stored at the format shrinks by
exactly its bytes per value; buffers, optimizer state and the fp32 master weights stay fp32; fp32 is unchanged."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest

from cnnlab.analysis import analyze
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.precision.memory import at_format

# Bytes per value relative to fp32's 4.
RATIOS = {"fp16": Fraction(1, 2), "bf16": Fraction(1, 2), "fp8_e4m3": Fraction(1, 4), "fp8_e5m2": Fraction(1, 4),
          "fixed<4,12>": Fraction(1, 2), "fixed<3,5>": Fraction(1, 4), "fixed<8,16>": Fraction(3, 4),
          "binary": Fraction(1, 32)}  # fmt: skip


@pytest.fixture(scope="module")
def resnet18():
    """resnet18 in fp32: BatchNorm buffers, and 11,689,512 parameters (a multiple of 8, so binary is exact)."""
    return analyze("resnet18")


@pytest.mark.parametrize("fmt", list(RATIOS))
def test_what_is_stored_at_the_format_shrinks_by_its_bytes_per_value(resnet18, fmt):
    base, ratio = resnet18, RATIOS[fmt]
    rep = at_format(base, fmt)
    assert rep.dtype == f"{fmt}, emulated"
    assert rep.param_bytes * ratio.denominator == base.param_bytes * ratio.numerator  # exactly
    assert rep.param_bytes == math.ceil(base.total_params * 4 * ratio)
    for got, fp32 in [(rep.total_activation_bytes, base.total_activation_bytes),
                      (rep.peak_activation_bytes, base.peak_activation_bytes),
                      (rep.saved_activation_bytes, base.saved_activation_bytes)]:  # fmt: skip
        assert got == math.ceil(fp32 * ratio)
    assert [r.activation_bytes for r in rep.rows] == [math.ceil(r.activation_bytes * ratio) for r in base.rows]
    # BinaryConnect / BinaryNet keep real-valued gradients; every other format stores them at the format.
    assert rep.grad_bytes == (base.grad_bytes if fmt == "binary" else math.ceil(base.grad_bytes * ratio))
    # Kept fp32: BatchNorm's running statistics, the optimizer's state, a master copy of the trainable weights.
    assert rep.buffer_bytes == base.buffer_bytes > 0
    assert rep.optimizer_state_bytes == base.optimizer_state_bytes == 4 * base.trainable_params  # momentum
    assert rep.master_bytes == 4 * base.trainable_params and base.master_bytes == 0
    assert rep.training_bytes == (rep.saved_activation_bytes + rep.param_bytes + rep.buffer_bytes + rep.grad_bytes
                                  + rep.optimizer_state_bytes + rep.master_bytes)  # fmt: skip
    # Counts do not change with the format.
    assert (rep.total_params, rep.total_macs, len(rep.rows)) == (base.total_params, base.total_macs, len(base.rows))


def test_fp16_halves_parameters_and_binary_takes_a_32nd(resnet18):
    assert at_format(resnet18, "fp16").param_bytes * 2 == resnet18.param_bytes == 4 * 11_689_512
    assert at_format(resnet18, "binary").param_bytes * 32 == resnet18.param_bytes


def test_fp32_is_the_report_itself_and_a_converted_report_is_not_converted_again(resnet18):
    assert at_format(resnet18, "fp32") is resnet18 and at_format(resnet18, "float32") is resnet18
    with pytest.raises(CnnlabError, match="needs an fp32 report"):
        at_format(at_format(resnet18, "fp16"), "fp8_e4m3")


def test_the_default_output_is_unchanged_and_says_nothing_of_formats(capsys):
    assert main(["analyze", "lenet5"]) == 0
    default = capsys.readouterr().out
    assert main(["analyze", "lenet5", "--dtype", "fp32"]) == 0
    assert capsys.readouterr().out == default
    assert "(float32, eval mode)" in default and "master" not in default and "memory at" not in default


def test_the_text_output_names_the_format_and_what_stays_fp32(capsys):
    assert main(["analyze", "lenet5", "--dtype", "fp16", "--optimizer", "adam"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "lenet5: input 1x1x32x32 (fp16, emulated, eval mode)"
    assert "fp32 master weights" in out
    assert "memory at fp16: params, grads, activations; kept fp32: buffers, adam state, master weights\n" in out
    assert main(["analyze", "lenet5", "--dtype", "binary", "--format", "md"]) == 0
    assert "kept fp32: buffers, sgd_momentum state, master weights, grads" in capsys.readouterr().out


@pytest.mark.parametrize(("fmt", "per_value"), [("fp16", 2), ("fixed<4,12>", 2), ("fp8_e5m2", 1),
                                                ("binary", Fraction(1, 8))])  # fmt: skip
def test_the_json_output_at_a_format(capsys, fmt, per_value):
    assert main(["analyze", "lenet5", "--dtype", fmt, "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    t = d["totals"]
    assert d["dtype"] == f"{fmt}, emulated"
    assert t["param_bytes"] == math.ceil(t["params"] * per_value)  # lenet5's 61,706: binary rounds up a byte
    assert t["master_bytes"] == 4 * t["trainable_params"]


@pytest.mark.parametrize(("dtype", "says"), [("fp17", "unknown number format 'fp17'"), ("fixed<0,4>", "sign bit"),
                                             ("fixed<4>", "fixed<IL,FL>")])  # fmt: skip
def test_a_bad_dtype_is_one_line_and_exit_2(capsys, dtype, says):
    assert main(["analyze", "lenet5", "--dtype", dtype]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("cnnlab analyze: error: ") and says in lines[0]
