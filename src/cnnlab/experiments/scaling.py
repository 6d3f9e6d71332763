"""`scaling`: at matched MACs, scaling depth, width and resolution together (compound scaling) beats scaling one
of them (Tan & Le 2019, EfficientNet, Sec. 3.3, Tables 3 and 7).

A small MBConv net from the zoo's EfficientNet family (`efficientnet_b0` with spec overrides: three narrow rows of
Table 1 with CIFAR strides, so 32 px -> 16 (stem) -> 8 -> 4; a 256-channel head), then for each MAC target (2x
and 4x the base's) one arm per rule: depth only (repeats x d, rounded up), width only (channels x w, rounded to
4), resolution only (the images upsampled to r x 32 px, recipe `image_size`) and compound (d, w, r = 1.2^phi,
1.1^phi, 1.15^phi). Each rule's multiplier is the point of a 0.01 grid whose MACs (analyzer, at the arm's own
resolution) are nearest the target; the MAC claims are exact within 10%. The accuracy claims are paired over
seeds and were fixed before any run: at each target, compound tests better than each single rule, three claims,
so that "the best single dimension" is never picked from the test numbers it is then compared on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare, exact_claim

RULES = ("depth", "width", "resolution", "compound")
# The base net's rows (Table 1's first three, narrower strides): expand, kernel, stride, in, out; Config.repeats
# gives each row's blocks. Four blocks in the scaled rows keep ceil(n x d) close to n x d (d = 1.2: 5, not 6).
ROWS = ((1, 3, 1, 16, 16), (6, 3, 2, 16, 24), (6, 5, 2, 24, 40))


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x 9 arms whose MACs add up to 25x the base net's, 3,000 images x 4 epochs (84 steps a
    # trial): 63 min beside other runs (load 6-7 on 2 cores), of which the third seed, alone, trained in 3.4 min
    # (so about 12 min for a quiet machine). 4,000 x 5 was stopped at an ETA of 2.4 h beside those runs.
    train_images: int = 3_000
    epochs: int = 4
    targets: tuple[float, ...] = (2.0, 4.0)  # MACs as multiples of the base net's
    rules: tuple[str, ...] = RULES
    tolerance: float = 0.10  # an arm's MACs may miss its target by this fraction
    alpha: float = 1.2  # Eq. 3: d = alpha^phi, w = beta^phi, r = gamma^phi
    beta: float = 1.1
    gamma: float = 1.15
    resolution: int = 32  # the base net's input side (CIFAR's); larger ones are upsampled by the data path
    repeats: tuple[int, ...] = (1, 4, 4)  # blocks per row of ROWS
    head_channels: int = 256  # the final 1x1 conv (B0's 1280 would be most of a small net's MACs)


def multipliers(cfg: Config, rule: str, s: float) -> tuple[float, float, int]:
    """(d, w, input side in px) of `rule` at grid point `s` (the multiplier itself, or phi for compound)."""
    if rule == "compound":
        d, w = cfg.alpha**s, cfg.beta**s
        return d, w, round(cfg.resolution * cfg.gamma**s)
    return (
        (s if rule == "depth" else 1.0),
        (s if rule == "width" else 1.0),
        round(cfg.resolution * (s if rule == "resolution" else 1.0)),
    )


def model_args(cfg: Config, d: float = 1.0, w: float = 1.0, px: int | None = None) -> dict[str, Any]:
    """Spec overrides of `efficientnet_b0` for the base net scaled by d and w (px only sets its default input)."""
    return {
        "rows": [[*row, n] for row, n in zip(ROWS, cfg.repeats)],
        "stem_channels": ROWS[0][3],
        "head_channels": cfg.head_channels,
        "width": w,
        "depth": d,
        "resolution": px or cfg.resolution,
        # No regularizers: a few epochs underfit, and B0's stochastic depth would grow with the depth multiplier.
        "dropout": 0.0,
        "stochastic_depth": 0.0,
        # DEVIATION: channels round to multiples of 4, not B0's 8: on 16-40 channels a step of 8 is 20-50%, too
        # coarse for a width multiplier to land within 10% of a MAC target.
        "divisor": 4,
    }


def analyze_arm(args: dict[str, Any], px: int, classes: int = 10) -> tuple[int, int, int]:
    """(params, MACs, MBConv blocks) from the analyzer at px x px: the arm's own resolution, not the data's."""
    import torch

    import cnnlab
    from cnnlab.nn.mbconv import MBConv
    from cnnlab.train.setup import create_with_overrides

    with torch.device("meta"):
        model = create_with_overrides("efficientnet_b0", args, num_classes=classes)
    rep = cnnlab.analyze(model, (3, px, px))
    return int(rep.total_params), int(rep.total_macs), sum(isinstance(m, MBConv) for m in model.modules())


@cache
def _macs(cfg: Config, rule: str, s: float) -> int:
    d, w, px = multipliers(cfg, rule, s)
    return analyze_arm(model_args(cfg, d, w, px), px)[1]


@cache
def search(cfg: Config, rule: str, target: float) -> float:
    """The grid point (0.01 apart) whose MACs are nearest target x the base's, in ratio.

    MACs are a non-decreasing step function of each multiplier (repeats round up, channels to multiples of 4,
    sides to pixels), so a bisection finds the first point at or above the target; it or the one before is nearest.
    """
    start, goal = (0.0 if rule == "compound" else 1.0), target * _macs(cfg, "depth", 1.0)

    def at(k: int) -> int:
        return _macs(cfg, rule, round(start + k / 100, 2))

    hi = 1
    while at(hi) < goal:
        hi *= 2
        if hi > 2048:  # past a multiplier (or phi) of 20: the rule cannot reach the target on this net
            raise CnnlabError(f"config: {rule} scaling does not reach {target:g}x the base net's MACs")
    lo = hi // 2 if hi > 1 else 0
    while hi - lo > 1:  # at(lo) < goal <= at(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if at(mid) >= goal else (mid, hi)
    k = min((lo, hi), key=lambda k: abs(math.log(at(k) / goal)))
    return round(start + k / 100, 2)


def _name(rule: str, target: float) -> str:
    return f"{rule[:3]}{target:g}x"


def plan(cfg: Config) -> list[dict[str, Any]]:
    """Every arm's rule, target, grid point and (d, w, px); the base first."""
    rows = [{"name": "base", "rule": "base", "target": 1.0, "s": 1.0, "d": 1.0, "w": 1.0, "px": cfg.resolution}]
    for t in cfg.targets:
        for rule in cfg.rules:
            s = search(cfg, rule, t)
            d, w, px = multipliers(cfg, rule, s)
            rows.append({"name": _name(rule, t), "rule": rule, "target": t, "s": s, "d": d, "w": w, "px": px})
    return rows


def _check(cfg: Config) -> None:
    for rule in cfg.rules:
        if rule not in RULES:
            raise UnknownNameError("scaling rule", rule, RULES)
    if "compound" not in cfg.rules or len(cfg.rules) < 2 or len(set(cfg.rules)) != len(cfg.rules):
        raise CnnlabError(
            f"config: rules must be distinct and include compound and a single rule, got {list(cfg.rules)}"
        )
    if not cfg.targets or any(not t > 1 for t in cfg.targets) or len(set(cfg.targets)) != len(cfg.targets):
        raise CnnlabError(f"config: targets must be distinct MAC multiples above 1, got {list(cfg.targets)}")
    if min(cfg.alpha, cfg.beta, cfg.gamma) < 1 or not 0 < cfg.tolerance < 1:
        raise CnnlabError("config: alpha, beta, gamma must be >= 1 and tolerance in (0, 1)")
    if len(cfg.repeats) != len(ROWS) or min(cfg.repeats) < 1 or cfg.resolution < 8 or cfg.head_channels < 8:
        raise CnnlabError(f"config: repeats needs {len(ROWS)} counts >= 1, resolution >= 8, head_channels >= 8")


def _augment(augment: str, scale: float) -> str:
    """`augment` with its pixel sizes (crop padding, cutout) scaled with the image: every arm then shifts and
    masks the same fraction of the picture, so resolution arms are not also less augmented."""
    return re.sub(r"\b(crop|cutout):(\d+)", lambda m: f"{m[1]}:{round(int(m[2]) * scale)}", augment)


def _label(p: dict[str, Any]) -> str:
    what = {"base": "base", "depth": f"depth d={p['d']:.2f}", "width": f"width w={p['w']:.2f}",
            "resolution": f"resolution {p['px']} px", "compound": f"compound phi={p['s']:.2f}"}[p["rule"]]  # fmt: skip
    return what if p["rule"] == "base" else f"{what} ({p['target']:g}x)"


def _arms(cfg: Config) -> list[Arm]:
    _check(cfg)
    return [
        Arm(p["name"], _label(p), "efficientnet_b0", model_args(cfg, p["d"], p["w"], p["px"]),
            {"image_size": p["px"], "augment": _augment(cfg.augment, p["px"] / cfg.resolution)})
        for p in plan(cfg)
    ]  # fmt: skip


def extra(cfg: Config, r: dict[str, Any]) -> dict[str, Any]:
    """Each arm's multipliers, blocks and MACs at its own resolution (results["arms"] counts all at the data's)."""
    classes = len(r["data"]["classes"])
    rows = []
    for p in plan(cfg):
        args = model_args(cfg, p["d"], p["w"], p["px"])
        params, macs, blocks = analyze_arm(args, p["px"], classes)
        rows.append({**p, "blocks": blocks, "params": params, "macs": macs})
    base = rows[0]["macs"]
    lines = [f"Each arm at its own input side (analyzer MACs; the base net has {rows[0]['blocks']} MBConv blocks):", "",
             "| arm | rule | grid point | d | w | r (px) | blocks | params | MACs | / base | target |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for x in rows:
        lines.append(f"| {x['name']} | {x['rule']} | {x['s']:.2f} | {x['d']:.3f} | {x['w']:.3f} | {x['px']} | "
                     f"{x['blocks']} | {x['params']:,} | {x['macs']:,} | {x['macs'] / base:.3f} | "
                     f"{x['target']:g} |")  # fmt: skip
    lines += ["", "For compound arms the grid point is phi; d, w are the rule's exact values, r is rounded to pixels "
              "and repeats round up, so the net's blocks and widths move in steps.", ""]  # fmt: skip
    return {"base_macs": base, "arms": {x["name"]: x for x in rows}, "lines": lines}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, a = published("scaling"), r["analysis"]
    base, claims = a["base_macs"], []
    for x in a["arms"].values():
        if x["rule"] != "base":
            claims.append(exact_claim(f"macs_{x['name']}", f"{r['arms'][x['name']]['label']} costs {x['target']:g}x "
                                      "the base net's MACs", x["macs"], round(x["target"] * base), p["rule"],
                                      rel_tol=cfg.tolerance))  # fmt: skip
    for t in cfg.targets:
        c = _name("compound", t)
        claims += [
            compare(r, f"test_{_name(rule, t)}", f"at {t:g}x MACs, compound scaling tests better than {rule} only",
                    "test_error", c, _name(rule, t), p["compound"])
            for rule in cfg.rules if rule != "compound"
        ]  # fmt: skip
    return claims


def report(cfg: Config, r: dict[str, Any], out: Path) -> list[str]:
    """Test accuracy per rule and target, and scaling.png (accuracy against MACs, one line per rule)."""
    a = r["analysis"]["arms"]
    acc = {
        n: (100 * (1 - s["test_error"]["mean"]), 100 * (s["test_error"]["std"] or 0.0)) for n, s in r["arms"].items()
    }
    _plot(cfg, a, acc, out / "scaling.png")
    head = "| rule | " + " | ".join(f"{t:g}x MACs" for t in cfg.targets) + " |"
    rows = [head, "|---|" + "---:|" * len(cfg.targets)]
    for rule in cfg.rules:
        rows.append(
            f"| {rule} | " + " | ".join("{:.2f} ± {:.2f}".format(*acc[_name(rule, t)]) for t in cfg.targets) + " |"
        )
    best = {t: max((x for x in cfg.rules if x != "compound"), key=lambda x: acc[_name(x, t)][0]) for t in cfg.targets}
    return [
        "## Test accuracy (%) by scaling rule and MAC target",
        "",
        f"Base net: {acc['base'][0]:.2f} ± {acc['base'][1]:.2f}% at {a['base']['macs']:,} MACs. Mean ± sample std "
        "over seeds. The single rule with the best mean, for reading only (the verdicts compare compound with each "
        "rule): " + ", ".join(f"{t:g}x: {best[t]}" for t in cfg.targets) + ".",
        "",
        *rows,
        "",
        "![test accuracy against MACs per scaling rule](scaling.png)",
        "",
    ]


def _plot(cfg: Config, a: dict[str, Any], acc: dict[str, tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from cnnlab.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for rule in cfg.rules:
        names = ["base", *(_name(rule, t) for t in sorted(cfg.targets))]
        ax.errorbar([a[n]["macs"] / 1e6 for n in names], [acc[n][0] for n in names], yerr=[acc[n][1] for n in names],
                    marker="o", capsize=3, label=rule)  # fmt: skip
    ax.set_xscale("log", base=2)
    # Ticks at the targets, as plain numbers: a log axis' defaults ("2^2") say nothing about the base net.
    base = a["base"]["macs"] / 1e6
    ax.set_xticks([base * t for t in (1, *cfg.targets)], [f"{base * t:.1f}\n({t:g}x)" for t in (1, *cfg.targets)])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("MACs per image (millions, analyzer, at the arm's resolution)")
    ax.set_title(f"test accuracy, mean ± std of {cfg.seeds} seed(s)", fontsize=9)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


EXPERIMENT = Experiment(
    name="scaling",
    claim="at matched MACs, compound scaling (d, w, r = 1.2^phi, 1.1^phi, 1.15^phi) beats depth, width or resolution",
    source="Tan & Le 2019, arXiv:1905.11946, Sec. 3.3, Tables 3 and 7",
    config=Config,
    # base + the four rules at 2x on a shallower base, 2 seeds of 14 steps (17 s alone): the numbers mean little.
    quick={**QUICK, "targets": (2.0,), "repeats": (1, 2, 2)},
    paper={**PAPER, "epochs": 100},
    arms=_arms,
    judge=judge,
    extra=extra,
    report=report,
)
