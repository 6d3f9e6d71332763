"""`cnnlab formats [FMT...]`: one row per format, its figures those of Format.describe(); bad names exit 2."""

from __future__ import annotations

import math

import pytest

from cnnlab.cli import main
from cnnlab.precision import parse_format

HEAD = ["format", "bits", "min", "max", "step", "smallest normal", "smallest subnormal"]
DEFAULT = ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fixed<4,12>", "fixed<8,8>", "binary"]


def _rows(out: str) -> dict[str, list[str]]:
    """The table's rows by format name (the header, the rule and the footnote left out)."""
    lines = out.splitlines()
    assert lines[0].split() == [w for h in HEAD for w in h.split()] and set(lines[1]) <= {"-", " "}
    return {ln.split()[0]: ln.split() for ln in lines[2:] if ln and not ln.startswith("step:")}


def _agrees(cell: str, value: float | None) -> bool:
    if value is None:
        return cell == "-"
    return math.isclose(float(cell), value, rel_tol=1e-3)  # the table prints 4 significant digits


def test_the_default_table_lists_each_format_with_its_figures(capsys):
    assert main(["formats"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == DEFAULT
    for name, cells in rows.items():
        d = parse_format(name).describe()
        assert int(cells[1]) == d["bits"], name
        for cell, key in zip(cells[2:], ["min", "max", "step", "smallest_normal", "smallest_subnormal"]):
            assert _agrees(cell, d[key]), (name, key, cell)
    assert rows["fp16"][2:] == ["-65504", "65504", "0.0009766", "6.104e-05", "5.96e-08"]
    assert rows["fp8_e4m3"][3] == "448" and rows["fp8_e5m2"][3] == "57344"


def test_given_formats_in_the_order_given(capsys):
    assert main(["formats", "fixed<2,14>", "half", "fixed:4,12"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == ["fixed<2,14>", "fp16", "fixed<4,12>"]
    assert rows["fixed<2,14>"][1:4] == ["16", "-2", "1.99994"] and _agrees(rows["fixed<2,14>"][4], 2**-14)


@pytest.mark.parametrize(("args", "says"), [(["fp16", "fp61"], "unknown number format 'fp61'; did you mean fp16"),
                                            (["fixed<0,8>"], "sign bit"), (["fixed<4>"], "fixed<IL,FL>"),
                                            (["fixed<8,20>"], "24 bits")])  # fmt: skip
def test_a_bad_name_is_one_line_on_stderr_and_exit_2(capsys, args, says):
    assert main(["formats", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # every name is checked before the table prints
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab formats: error: ") and says in lines[0]
