"""`factorize`: an n x n conv factorizes into 1 x n then n x 1 on mid-sized grids, not on early ones (Szegedy
et al. 2015, Inception-v3, Sec. 3.2 and Fig. 6).

Three lab nets (cnnlab.models.labnet) with n x n units on a 32-16-8 grid: all n x n; the 16 x 16 and 8 x 8
stages factorized; the 32 x 32 stage factorized. The cost claim is exact, from the analyzer on one unit: 2nC^2
instead of n^2 C^2 conv weights (33% fewer at n = 3) with the same receptive field. The accuracy claims are
paired over seeds: factorizing the mid stages costs no more than `margin` of test error (a non-inferiority
claim), and factorizing the early stage costs more than factorizing the mid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.costs import conv_cost, table
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare, exact_claim


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x 3 arms in about 15 minutes on 2 CPU cores (docs/reproduce.md has the measured time).
    train_images: int = 5_000
    epochs: int = 6
    widths: tuple[int, int, int] = (32, 64, 128)  # on 32 x 32, 16 x 16 and 8 x 8 maps
    depth: int = 2
    n: int = 3  # the kernel factorized (Inception-v3 uses 3 in Fig. 7 and 7 on its 17 x 17 grid)
    margin: float = 0.01  # test error the mid-grid factorization may cost and still "work well"


def _units(cfg: Config, factorized: tuple[bool, bool, bool]) -> list[str]:
    square, asym = f"{cfg.n}x{cfg.n}", f"1x{cfg.n}+{cfg.n}x1"
    return [asym if f else square for f in factorized]


def _arms(cfg: Config) -> list[Arm]:
    if len(cfg.widths) != 3:
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"config: widths must be three stage widths (32, 16 and 8 pixel grids), got {cfg.widths}")
    n = cfg.n
    args = {"widths": list(cfg.widths), "stem_channels": cfg.widths[0], "depth": cfg.depth}
    return [
        Arm("full", f"{n}x{n} everywhere", "labnet", {**args, "units": _units(cfg, (False, False, False))}),
        Arm("mid", f"1x{n}+{n}x1 on 16 and 8 px grids", "labnet", {**args, "units": _units(cfg, (False, True, True))}),
        Arm("early", f"1x{n}+{n}x1 on the 32 px grid", "labnet", {**args, "units": _units(cfg, (True, False, False))}),
    ]


def extra(cfg: Config, r: dict[str, Any]) -> dict[str, Any]:
    from cnnlab.models.labnet import unit

    c, (square, asym) = cfg.widths[1], _units(cfg, (False, True, True))[:2]
    shape = (c, 16, 16)
    units = {"square": conv_cost(unit(square, c, c), shape), "factorized": conv_cost(unit(asym, c, c), shape)}
    return {"units": units, "lines": table({square: units["square"], asym: units["factorized"]}, shape)}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, u, c, n = published("factorize"), r["analysis"]["units"], cfg.widths[1], cfg.n
    test = "test_error"
    return [
        exact_claim("weights_square", f"a {n}x{n} unit has {n * n}C^2 conv weights (C = {c})",
                    u["square"]["weights"], n * n * c * c, p["weights"]),
        exact_claim("weights_factorized", f"1x{n} then {n}x1 has {2 * n}C^2 conv weights "
                    f"({100 * (1 - 2 / n):.0f}% fewer)", u["factorized"]["weights"], 2 * n * c * c, p["weights"]),
        exact_claim("field", f"1x{n} then {n}x1 sees what a {n}x{n} sees", u["factorized"]["receptive_field"],
                    u["square"]["receptive_field"], p["field"], unit=" px"),
        compare(r, "mid_works", f"factorizing the mid grids costs less than {100 * cfg.margin:g} pp of test error",
                test, "mid", "full", p["mid"], margin=cfg.margin),
        compare(r, "early_hurts", "factorizing the early grid costs more than factorizing the mid ones", test,
                "mid", "early", p["early"]),
    ]  # fmt: skip


EXPERIMENT = Experiment(
    name="factorize",
    claim="an n x n conv factorizes into 1 x n + n x 1 on mid-sized grids, not early",
    source="Szegedy et al. 2015, Inception-v3, arXiv:1512.00567, Sec. 3.2",
    config=Config,
    quick={**QUICK, "widths": (8, 16, 32)},
    paper={**PAPER, "epochs": 160},
    arms=_arms,
    judge=judge,
    extra=extra,
)
