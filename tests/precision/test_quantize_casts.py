"""quantize(..., "nearest") is PyTorch's own cast, bit for bit; stochastic rounding is unbiased, picks a neighbour."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.precision import fixed, fixed_in_word, parse_format, quantize, quantize_counted

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def _all_values(dtype: torch.dtype) -> torch.Tensor:
    """Every finite value of a 16- or 8-bit dtype, as fp32, sorted (from all its bit patterns)."""
    if dtype.itemsize == 2:
        raw = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    else:
        raw = torch.arange(-128, 128, dtype=torch.int32).to(torch.int8).view(dtype)
    v = raw.float()
    return v[torch.isfinite(v)].unique()


def _grid(dtype: torch.dtype) -> torch.Tensor:
    v = _all_values(dtype)
    mids = ((v[1:].double() + v[:-1].double()) / 2).float()  # the ties, exact in fp32 for these formats
    up, down = torch.nextafter(mids, torch.tensor(math.inf)), torch.nextafter(mids, torch.tensor(-math.inf))
    g = torch.Generator().manual_seed(0)
    patterns = torch.randint(-(2**31), 2**31 - 1, (1_000_000,), generator=g, dtype=torch.int64)
    random_fp32 = patterns.to(torch.int32).view(torch.float32)  # the whole fp32 range, subnormals and NaNs too
    edges = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-45, 1e-40, 65504.0, 65519.99,
                          65520.0, 448.0, 464.0, 480.0, 1e4, 57344.0, 61439.0, 61440.0, 3.0e38, -3.0e38])  # fmt: skip
    return torch.cat([v, mids, up, down, random_fp32, edges])


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.view(torch.int32) == b.view(torch.int32)) | (torch.isnan(a) & torch.isnan(b))


@pytest.mark.parametrize("name", list(DTYPES))
def test_nearest_is_pytorchs_cast_bit_for_bit(name):
    x = _grid(DTYPES[name])
    ref = x.to(DTYPES[name]).float()
    got = quantize(x, name)
    bad = ~_bits_equal(got, ref)
    assert not bad.any(), f"{int(bad.sum())} mismatches, e.g. {x[bad][:5].tolist()} -> {got[bad][:5].tolist()}"


def test_edge_cases_read_as_the_formats_say():
    x = torch.tensor([-0.0, 2.0**-25, 2.0**-24, 65520.0, math.inf, math.nan])
    y = quantize(x, "fp16")
    assert math.copysign(1, y[0].item()) == -1  # -0 keeps its sign
    assert y[1].item() == 0 and y[2].item() == 2.0**-24  # a tie at half the smallest subnormal goes to even (0)
    assert y[3].item() == math.inf and y[4].item() == math.inf and math.isnan(y[5].item())
    assert quantize(torch.tensor([1e6, -math.inf]), "fp8_e4m3").tolist() == [448.0, -448.0]  # no inf: saturates
    assert quantize(torch.tensor([1e6]), "fp8_e5m2").item() == math.inf
    assert quantize(torch.tensor([2.0**-133]), "bf16").item() == 2.0**-133  # bf16's smallest subnormal


def test_fixed_point_grid_saturation_and_ties():
    f = parse_format("fixed<4,12>")
    assert (f.min, f.max, f.step) == (-8.0, 8 - 2**-12, 2**-12)
    x = torch.tensor([1e9, -1e9, math.inf, -math.inf, 0.5 * 2**-12, 1.5 * 2**-12, math.nan, 3.14159])
    y = quantize(x, f)
    assert y[:4].tolist() == [f.max, -8.0, f.max, -8.0]
    assert y[4].item() == 0.0 and y[5].item() == 2 * 2**-12  # ties to even on the grid
    assert math.isnan(y[6].item())
    assert (y[7] * 2**12).item() == round(3.14159 * 2**12)


def test_fixed_point_bad_words_are_refused():
    with pytest.raises(CnnlabError, match="outside a 16-bit word"):
        fixed_in_word(16, 16)
    with pytest.raises(CnnlabError, match="sign bit"):
        fixed(0, 8)
    with pytest.raises(CnnlabError, match="24 bits"):
        fixed(8, 20)
    assert fixed_in_word(16, 14).name == "fixed<2,14>"
    with pytest.raises(UnknownNameError, match="did you mean fp16"):
        parse_format("fp61")
    assert parse_format("fixed:4,12") == parse_format("fixed<4,12>") and parse_format("half").name == "fp16"


def test_formats_agree_with_torch_finfo():
    for name, dtype in DTYPES.items():
        f, fi = parse_format(name), torch.finfo(dtype)
        assert f.max == fi.max and f.smallest_normal == fi.smallest_normal and f.step == fi.eps, name
        assert f.smallest_subnormal == _all_values(dtype)[_all_values(dtype) > 0].min().item(), name


@pytest.mark.parametrize(("name", "x"), [("fp16", 1.0 + 2**-12), ("bf16", 3.0e-3), ("fixed<4,12>", 0.3 * 2**-12),
                                         ("fixed<8,8>", -1.7), ("binary", 0.4)])  # fmt: skip
def test_stochastic_rounding_is_unbiased(name, x):
    n = 200_000
    g = torch.Generator().manual_seed(1)
    y = quantize(torch.full((n,), x), name, "stochastic", g).double()
    lo, hi = y.min().item(), y.max().item()
    p = (x - lo) / (hi - lo) if hi > lo else 0.0
    bound = 5 * (hi - lo) * math.sqrt(max(p * (1 - p), 1e-12) / n)  # five standard errors of the mean
    assert abs(y.mean().item() - x) <= bound + 1e-12
    assert len(y.unique()) <= 2


def test_binary_stochastic_follows_hard_sigmoid():
    g = torch.Generator().manual_seed(2)
    for x in (-1.5, -0.5, 0.0, 0.6, 2.0):
        y = quantize(torch.full((100_000,), x), "binary", "stochastic", g)
        p = min(max((x + 1) / 2, 0.0), 1.0)
        assert abs((y == 1).float().mean().item() - p) <= 5 * math.sqrt(max(p * (1 - p), 1e-12) / 1e5) + 1e-9
    assert quantize(torch.tensor([-0.1, 0.0, 0.1]), "binary").tolist() == [-1, 1, 1]


def _neighbours(x: float, name: str) -> tuple[float, float]:
    """The format's values just below and above x (equal when x is one of them)."""
    if name.startswith("fixed"):
        step = parse_format(name).step
        return math.floor(x / step) * step, math.ceil(x / step) * step
    vals = _all_values(DTYPES[name])
    i = int(torch.searchsorted(vals, torch.tensor([x])).item())
    if vals[i].item() == x:
        return x, x
    return vals[i - 1].item(), vals[i].item()


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fixed<4,12>"]),
    x=st.floats(min_value=-7.5, max_value=7.5, allow_nan=False, width=32),
    seed=st.integers(0, 2**31 - 1),
)
def test_stochastic_rounding_returns_a_neighbour(name, x, seed):
    g = torch.Generator().manual_seed(seed)
    y = quantize(torch.full((64,), x), name, "stochastic", g)
    lo, hi = _neighbours(x, name)
    assert set(y.tolist()) <= {lo, hi}
    if lo == hi:
        assert (y == x).all()


def test_counted_events_on_hand_built_tensors():
    _, c = quantize_counted(torch.tensor([1e-9, 1e5, 1.0, 0.0]), parse_format("fp16"), "nearest")
    assert c.tolist() == [3, 1, 1, 0]  # nonzero, flushed (1e-9), overflows (1e5), saturations
    _, c = quantize_counted(torch.tensor([9.0, -9.0, 1e-5, 2.0]), parse_format("fixed<4,12>"), "nearest")
    assert c.tolist() == [4, 1, 0, 2]
