"""quantize(..., "nearest") is PyTorch's own cast bit for bit; fixed point sits on its grid and saturates;
stochastic rounding is unbiased and only ever returns a neighbour; binary is sign / hard-sigmoid; the counters."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.precision import parse_format, quantize, quantize_counted

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
INF = torch.tensor(math.inf)


@functools.cache
def _all_values(dtype: torch.dtype) -> torch.Tensor:
    """Every finite value of a 16- or 8-bit dtype, as fp32, sorted and once each (from all its bit patterns)."""
    bits = 8 * dtype.itemsize
    raw = torch.arange(-(2 ** (bits - 1)), 2 ** (bits - 1), dtype=torch.int32)
    v = raw.to(torch.int16 if bits == 16 else torch.int8).view(dtype).float()
    return v[torch.isfinite(v)].unique()  # -0 and +0 compare equal: one zero


def _f32(x: float) -> float:
    """x as the fp32 value `torch.full(..., x)` holds."""
    return torch.tensor(x, dtype=torch.float32).item()


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.view(torch.int32) == b.view(torch.int32)) | (torch.isnan(a) & torch.isnan(b))


# ---- nearest = PyTorch's cast ----


def _inputs(dtype: torch.dtype) -> torch.Tensor:
    v = _all_values(dtype)
    v = torch.cat([v, -v[v == 0]])  # -0.0 as well as +0.0
    mids = ((v[1:].double() + v[:-1].double()) / 2).float()  # the ties: exact in fp32 for these formats
    assert (mids.double() == (v[1:].double() + v[:-1].double()) / 2).all()
    up, down = torch.nextafter(mids, INF), torch.nextafter(mids, -INF)  # just past a tie, both ways
    g = torch.Generator().manual_seed(0)
    patterns = torch.randint(-(2**31), 2**31, (3_000_000,), generator=g, dtype=torch.int64)
    random_fp32 = patterns.to(torch.int32).view(torch.float32)  # the whole fp32 range: subnormals, infs, NaNs too
    fp32_subnormals = torch.tensor([1, 2, 3, 2**22, 2**23 - 1], dtype=torch.int32).view(torch.float32)
    edges = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 65504.0, 65519.99, 65520.0,
                          -65520.0, 448.0, 464.0, 465.0, 480.0, 1e4, 57344.0, 61439.0, 61440.0, 3.0e38, -3.4e38,
                          2.0**-24, 2.0**-25, 2.0**-26 * 3, 2.0**-9, 2.0**-10, 2.0**-16, 2.0**-17, 2.0**-133,
                          2.0**-134])  # fmt: skip
    return torch.cat([v, mids, up, down, random_fp32, fp32_subnormals, -fp32_subnormals, edges])


@pytest.mark.parametrize("name", list(DTYPES))
def test_nearest_is_pytorchs_cast_bit_for_bit(name):
    x = _inputs(DTYPES[name])
    ref = x.to(DTYPES[name]).float()
    got = quantize(x, name)
    assert got.dtype == torch.float32 and got.shape == x.shape
    bad = ~_bits_equal(got, ref)
    assert not bad.any(), f"{int(bad.sum())} mismatches, e.g. {x[bad][:5].tolist()} -> {got[bad][:5].tolist()}"


def test_every_value_of_a_format_is_a_fixed_point_of_nearest():
    for name, dtype in DTYPES.items():
        v = _all_values(dtype)
        assert _bits_equal(quantize(v, name), v).all(), name


def test_edge_cases_read_as_the_formats_say():
    y = quantize(torch.tensor([-0.0, 0.0, 2.0**-25, 3 * 2.0**-26, 2.0**-24, 65520.0, 65519.99, -math.inf,
                               math.nan, 1e-45]), "fp16")  # fmt: skip
    assert math.copysign(1, y[0].item()) == -1 and math.copysign(1, y[1].item()) == 1  # the zero's sign kept
    assert y[2].item() == 0 and y[3].item() == 2.0**-24 and y[4].item() == 2.0**-24  # half the subnormal: to 0
    assert y[5].item() == math.inf and y[6].item() == 65504 and y[7].item() == -math.inf
    assert math.isnan(y[8].item()) and y[9].item() == 0  # an fp32 subnormal flushes to fp16's zero
    assert math.copysign(1, quantize(torch.tensor([-1e-30]), "fp16").item()) == -1  # underflow keeps the sign
    # float8_e4m3fn has no inf: PyTorch's cast saturates at +-448, inf included.
    e4m3 = quantize(torch.tensor([464.0, 465.0, 1e6, math.inf, -math.inf]), "fp8_e4m3").tolist()
    assert e4m3 == [448.0, 448.0, 448.0, 448.0, -448.0]
    assert quantize(torch.tensor([61439.0, 61440.0, 1e6]), "fp8_e5m2").tolist() == [57344.0, math.inf, math.inf]
    assert quantize(torch.tensor([2.0**-133, 2.0**-134]), "bf16").tolist() == [2.0**-133, 0.0]  # bf16's subnormals
    assert quantize(torch.tensor([2.0**-9, 2.0**-10]), "fp8_e4m3").tolist() == [2.0**-9, 0.0]


# ---- fixed point ----


def test_fixed_point_is_on_its_grid_within_its_range_and_nearest_ties_to_even():
    f = parse_format("fixed<4,12>")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200_000, generator=g) * 5  # some beyond +-8
    y = quantize(x, f)
    k = y.double() * 2**12
    assert (k == k.round()).all()  # multiples of 2^-12
    assert y.min().item() == -8.0 and y.max().item() == 8 - 2**-12  # saturates at [-8, 8 - 2^-12]
    oracle = (x.double() * 2**12).round().clamp(-(2**15), 2**15 - 1) / 2**12  # float64, ties to even
    assert (y.double() == oracle).all()
    ties = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 7.5]) * 2**-12
    assert (quantize(ties, f) * 2**12).tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 8.0]


def test_fixed_point_saturates_inf_and_keeps_nan():
    f = parse_format("fixed<4,12>")
    y = quantize(torch.tensor([math.inf, -math.inf, 1e30, -8.0, -8.0001, 8.0, math.nan]), f)
    assert y[:6].tolist() == [f.max, -8.0, f.max, -8.0, -8.0, f.max]
    assert math.isnan(y[6].item())


# ---- stochastic rounding ----


def _neighbours(x: float, name: str) -> tuple[float, float]:
    """The format's values just below and at-or-above x (equal when x is one of them), from the grid itself."""
    if name.startswith("fixed"):
        step = parse_format(name).step
        return math.floor(x / step) * step, math.ceil(x / step) * step
    vals = _all_values(DTYPES[name])
    i = int(torch.searchsorted(vals, torch.tensor([x])).item())
    if vals[i].item() == x:
        return x, x
    return vals[i - 1].item(), vals[i].item()


CASES = [("fp16", 1.0 + 2**-12), ("fp16", -1000.3), ("fp16", 3.3e-6), ("bf16", 3.0e-3), ("bf16", -7.77),
         ("bf16", 1e30), ("fixed<4,12>", 0.3 * 2**-12), ("fixed<4,12>", -3.14159), ("fixed<4,12>", 7.9997)]  # fmt: skip


@pytest.mark.parametrize(("name", "x"), CASES)
def test_stochastic_rounding_is_unbiased(name, x):
    n, x = 200_000, _f32(x)
    lo, hi = _neighbours(x, name)
    assert lo < x < hi  # a value between two grid points, so both outcomes can occur
    g = torch.Generator().manual_seed(1)
    y = quantize(torch.full((n,), x), name, "stochastic", g).double()
    assert set(y.unique().tolist()) == {lo, hi}
    p = (x - lo) / (hi - lo)  # P(round up)
    bound = 5 * (hi - lo) * math.sqrt(p * (1 - p) / n)  # five standard errors of the mean
    assert abs(y.mean().item() - x) <= bound


def _in_range(name: str) -> st.SearchStrategy[float]:
    f = parse_format(name)
    anywhere = st.floats(min_value=f.min, max_value=f.max, allow_nan=False, width=32)
    if name.startswith("fixed"):
        on_grid = st.integers(round(f.min / f.step), round(f.max / f.step)).map(lambda k: k * f.step)
    else:
        on_grid = st.sampled_from(_all_values(DTYPES[name]).tolist())  # representable: must come back exactly
    return st.one_of(anywhere, on_grid)


@pytest.mark.parametrize("name", [*DTYPES, "fixed<4,12>", "fixed<8,8>"])
@settings(max_examples=150, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_stochastic_rounding_returns_a_neighbour(name, data, seed):
    x = data.draw(_in_range(name))
    g = torch.Generator().manual_seed(seed)
    y = quantize(torch.full((64,), x), name, "stochastic", g)
    lo, hi = _neighbours(x, name)
    assert set(y.tolist()) <= {lo, hi}
    if lo == hi:
        assert (y == x).all()


def test_stochastic_rounding_is_reproducible_from_the_generator():
    x = torch.linspace(-3, 3, 1000)
    a = quantize(x, "bf16", "stochastic", torch.Generator().manual_seed(7))
    b = quantize(x, "bf16", "stochastic", torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


# ---- binary ----


def test_binary_deterministic_is_sign_with_sign_of_zero_plus_one():
    y = quantize(torch.tensor([-3.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, math.inf, -math.inf]), "binary")
    assert y.tolist() == [-1, -1, 1, 1, 1, 1, 1, -1]


@pytest.mark.parametrize("x", [-1.5, -1.0, -0.5, 0.0, 0.6, 1.0, 2.0])
def test_binary_stochastic_is_plus_one_with_probability_hard_sigmoid(x):
    n = 100_000
    g = torch.Generator().manual_seed(2)
    y = quantize(torch.full((n,), x), "binary", "stochastic", g)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    p = min(max((x + 1) / 2, 0.0), 1.0)  # hard_sigmoid(x)
    assert abs((y == 1).double().mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / n)
    if -1 <= x <= 1:  # E[y] = 2p - 1 = x: unbiased inside [-1, 1]
        assert abs(y.double().mean().item() - x) <= 5 * math.sqrt((1 - x * x) / n)


# ---- counters ----


def test_counted_events_on_hand_built_tensors():
    fp16 = parse_format("fp16")
    y, c = quantize_counted(torch.tensor([1e-9, -1e-9, 1e5, 1.0, 0.0, math.inf]), fp16, "nearest")
    assert c.dtype == torch.int64 and c.tolist() == [5, 2, 1, 0]  # nonzero, flushed, overflows, saturations
    assert torch.equal(y, quantize(torch.tensor([1e-9, -1e-9, 1e5, 1.0, 0.0, math.inf]), fp16))
    _, c = quantize_counted(torch.tensor([9.0, -9.0, 1e-5, 2.0, math.inf]), parse_format("fixed<4,12>"), "nearest")
    assert c.tolist() == [5, 1, 0, 3]  # 1e-5 < 2^-13 flushes; 9, -9 and inf saturate, none overflows
    _, c = quantize_counted(torch.tensor([448.0, 500.0, -1e6, 1.0]), parse_format("fp8_e4m3"), "nearest")
    assert c.tolist() == [4, 0, 0, 2]  # e4m3 saturates instead of overflowing; 448 itself is not clipped
    _, c = quantize_counted(torch.tensor([1e5, 70000.0, 1.0]), fp16, "stochastic", torch.Generator().manual_seed(0))
    assert c.tolist() == [3, 0, 2, 0]
