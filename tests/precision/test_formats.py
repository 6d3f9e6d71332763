"""Formats: what describe() says agrees with torch.finfo and the formats' bit patterns; parsing, aliases, errors."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.precision import FLOATS, Format, bytes_per_value, fixed, fixed_in_word, parse_format

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8_e4m3": torch.float8_e4m3fn,
          "fp8_e5m2": torch.float8_e5m2}  # fmt: skip
KEYS = {"format", "bits", "min", "max", "step", "smallest_normal", "smallest_subnormal"}


def _from_bits(pattern: int, dtype: torch.dtype) -> float:
    """The value of one bit pattern of `dtype` (pattern 1: the smallest positive subnormal)."""
    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32}[dtype.itemsize]
    return torch.tensor([pattern], dtype=ints).view(dtype).float().item()


def test_floats_are_the_formats_torch_has():
    assert set(FLOATS) == set(DTYPES)
    for name, dtype in DTYPES.items():
        assert FLOATS[name].dtype == dtype


@pytest.mark.parametrize("name", list(DTYPES))
def test_describe_agrees_with_torch_finfo(name):
    dtype, fi = DTYPES[name], torch.finfo(DTYPES[name])
    d = parse_format(name).describe()
    assert set(d) == KEYS and d["format"] == name
    assert d["bits"] == fi.bits == 8 * dtype.itemsize
    assert d["max"] == fi.max and d["min"] == fi.min
    assert d["smallest_normal"] == fi.smallest_normal == fi.tiny
    assert d["step"] == fi.eps  # the spacing just above 1.0
    assert d["smallest_subnormal"] == _from_bits(1, dtype)  # torch.finfo has no smallest_subnormal
    # and they are the format's values: a cast leaves them unchanged
    assert torch.tensor([d["max"]]).to(dtype).float().item() == d["max"]
    assert torch.tensor([1.0 + d["step"]]).to(dtype).float().item() == 1.0 + d["step"]


@pytest.mark.parametrize(
    ("name", "max_", "normal", "subnormal", "step"),
    [
        ("fp16", 65504.0, 2.0**-14, 2.0**-24, 2.0**-10),
        ("bf16", 3.3895313892515355e38, 2.0**-126, 2.0**-133, 2.0**-7),
        ("fp8_e4m3", 448.0, 2.0**-6, 2.0**-9, 2.0**-3),
        ("fp8_e5m2", 57344.0, 2.0**-14, 2.0**-16, 2.0**-2),
        ("fp32", 3.4028234663852886e38, 2.0**-126, 2.0**-149, 2.0**-23),
    ],
)
def test_describe_gives_the_published_figures(name, max_, normal, subnormal, step):
    d = parse_format(name).describe()
    assert (d["max"], d["min"], d["smallest_normal"], d["smallest_subnormal"], d["step"]) == (
        max_, -max_, normal, subnormal, step)  # fmt: skip


def test_describe_fixed_point_and_binary():
    d = parse_format("fixed<4,12>").describe()
    assert d == {"format": "fixed<4,12>", "bits": 16, "min": -8.0, "max": 8 - 2**-12, "step": 2**-12,
                 "smallest_normal": None, "smallest_subnormal": 2**-12}  # fmt: skip
    d = parse_format("fixed<8,8>").describe()
    assert (d["bits"], d["min"], d["max"], d["step"]) == (16, -128.0, 128 - 2**-8, 2**-8)
    d = parse_format("binary").describe()
    assert (d["bits"], d["min"], d["max"], d["smallest_normal"], d["smallest_subnormal"]) == (1, -1.0, 1.0, None, None)


@pytest.mark.parametrize(("name", "nbytes"), [("fp32", 4), ("fp16", 2), ("bf16", 2), ("fp8_e4m3", 1),
                                              ("fp8_e5m2", 1), ("fixed<4,12>", 2), ("fixed<3,5>", 1),
                                              ("fixed<4,8>", 2), ("fixed<8,16>", 3), ("binary", 1 / 8)])  # fmt: skip
def test_bytes_per_value(name, nbytes):
    assert bytes_per_value(parse_format(name)) == nbytes


# ---- fixed point's words ----


def test_fixed_in_word_and_its_limits():
    assert fixed_in_word(16, 12) == fixed(4, 12) == parse_format("fixed<4,12>")
    assert fixed_in_word(16, 14).name == "fixed<2,14>" and fixed_in_word(16, 0).name == "fixed<16,0>"
    for fl in (16, 17, -1):
        with pytest.raises(CnnlabError, match=f"FL={fl} is outside a 16-bit word"):
            fixed_in_word(16, fl)


@pytest.mark.parametrize(("il", "fl", "match"), [(0, 8, "sign bit"), (-1, 4, "sign bit"), (4, -1, "FL must be"),
                                                 (8, 20, "24 bits")])  # fmt: skip
def test_bad_fixed_point_formats_are_refused(il, fl, match):
    with pytest.raises(CnnlabError, match=match):
        fixed(il, fl)
    if il >= 0 and fl >= 0:  # a minus sign is not a fixed<IL,FL> name at all (its own message)
        with pytest.raises(CnnlabError, match=match):
            parse_format(f"fixed<{il},{fl}>")


# ---- names ----


@pytest.mark.parametrize(
    ("alias", "name"),
    [("half", "fp16"), ("float16", "fp16"), ("FP16", "fp16"), (" fp16 ", "fp16"), ("bfloat16", "bf16"),
     ("float32", "fp32"), ("e4m3", "fp8_e4m3"), ("fp8", "fp8_e4m3"), ("e5m2", "fp8_e5m2"), ("sign", "binary"),
     ("fixed:4,12", "fixed<4,12>"), ("fixed(4,12)", "fixed<4,12>"), ("fixed<4, 12>", "fixed<4,12>"),
     ("Fixed<2,14>", "fixed<2,14>"), ("q4.12", "fixed<4,12>")],
)  # fmt: skip
def test_aliases(alias, name):
    assert parse_format(alias).name == name


def test_a_format_passes_through():
    f = parse_format("bf16")
    assert isinstance(f, Format) and parse_format(f) is f


@pytest.mark.parametrize(("bad", "suggested"), [("fp61", "fp16"), ("bf61", "bf16"), ("fp8_e4m4", "fp8_e4m3"),
                                                ("binry", "binary")])  # fmt: skip
def test_unknown_name_raises_and_suggests_close_names(bad, suggested):
    with pytest.raises(UnknownNameError) as e:
        parse_format(bad)
    msg = str(e.value)
    assert msg.startswith(f"unknown number format '{bad}'; did you mean ")
    assert suggested in msg.split("did you mean ", 1)[1]
    assert isinstance(e.value, CnnlabError) and isinstance(e.value, KeyError)


def test_a_name_with_nothing_close_lists_no_guess_and_a_malformed_fixed_says_how():
    with pytest.raises(UnknownNameError) as e:
        parse_format("zzzz")
    assert str(e.value) == "unknown number format 'zzzz'"
    with pytest.raises(CnnlabError, match=r"write fixed point as fixed<IL,FL>"):
        parse_format("fixed<4>")


def test_every_listed_float_has_sensible_ordering():
    for f in FLOATS.values():
        assert 0 < f.smallest_subnormal <= f.smallest_normal < 1 < f.max < math.inf
        assert f.smallest_normal / f.smallest_subnormal == 2**f.mantissa
