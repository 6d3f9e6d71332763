"""Seed statistics and the three verdicts.

Every comparison is paired: the arms of one seed share their data subset, data order and augmentation draws
(the seed is the recipe's), so the seed-to-seed noise that both arms share cancels in their difference.
"""

from __future__ import annotations

import math
from typing import Any

AGREES, DISAGREES, INCONCLUSIVE = "agrees", "does not agree", "inconclusive (within seed noise)"

# Student's t, two-sided 95% (the 0.975 quantile), for 1..30 degrees of freedom; 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip

RULE = (
    "Each claim compares two arms on one metric, paired by seed. With d the per-seed differences "
    "(n seeds), the claim **agrees** when the 95% t-interval mean(d) ± t(n-1) · std(d)/√n lies entirely on the "
    "claimed side of zero, **does not agree** when it lies entirely on the other side, and is **inconclusive "
    "(within seed noise)** when it contains zero (or n < 2). A claim that one arm is *no worse* than another "
    "by more than a margin m (a cheaper arm keeping the accuracy) puts -m in the place of zero. Cost claims "
    "(parameters, MACs, receptive field) "
    "are exact: they agree when the analyzer's count equals the paper's formula."
)


MEASUREMENT_RULE = (
    "A measurement, not a training claim: each verdict compares a measured share or ratio (median over repeats) "
    "with the threshold the claim names, and says which side of it the measurement falls; where repeats "
    "spread across the threshold it is **inconclusive (within seed noise)**, the repeats' spread standing in for "
    "the seeds'."
)


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; None for one value)."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def paired(lower: list[float], higher: list[float]) -> dict[str, Any]:
    """d = higher - lower per seed, with its mean, std and 95% t half-width."""
    if len(lower) != len(higher):
        raise ValueError("paired comparison needs the same seeds in both arms")
    d = [h - lo for lo, h in zip(lower, higher)]
    s = mean_std(d)
    half = t975(s["n"] - 1) * s["std"] / math.sqrt(s["n"]) if s["std"] is not None else None
    return {"diffs": d, "mean": s["mean"], "std": s["std"], "n": s["n"], "half_width": half}


def directional(diff: dict[str, Any], margin: float = 0.0) -> str:
    """The verdict on "the `higher` arm's metric is above the `lower` arm's" from `paired`'s result; with a
    margin m, on "it is above the `lower` arm's minus m" (non-inferiority of `lower` within m)."""
    if diff["half_width"] is None:
        return INCONCLUSIVE
    lo, hi = diff["mean"] + margin - diff["half_width"], diff["mean"] + margin + diff["half_width"]
    if lo > 0:
        return AGREES
    if hi < 0:
        return DISAGREES
    return INCONCLUSIVE


def exact(measured: float, expected: float, rel_tol: float = 0.0) -> str:
    """An exact (cost) claim: the analyzer's count equals the formula's, or is within `rel_tol` of it."""
    return AGREES if abs(measured - expected) <= rel_tol * abs(expected) else DISAGREES
