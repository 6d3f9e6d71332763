"""`depthwise`: depthwise separable convs cost 1/N + 1/D_K^2 of full convs for a small loss in accuracy; a
width multiplier trades accuracy for cost smoothly (Howard et al. 2017, MobileNets, Sec. 3.1-3.3, Tables 4, 6).

The zoo's MobileNet v1 with a CIFAR-sized body (`rows`: the first five layers of Table 1, so 32 -> 16 -> 8 -> 4
pixels after the stride-2 stem): the full-conv twin (`separable=False`, Table 4's "Conv MobileNet") against
the depthwise separable net at alpha 1.0, then alpha 0.75, 0.5 and 0.25 (Table 6). The cost claims are exact,
per layer, from the analyzer on both twins: (depthwise + pointwise MACs) / (full conv MACs) = 1/N + 1/9.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare, exact_claim

# Table 1's first five depthwise separable layers (dw stride, pointwise out channels).
ROWS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256))


@dataclass(frozen=True)
class Config(Setup):
    # Full size: 3 seeds x 5 arms in about 15 minutes on 2 CPU cores (docs/reproduce.md has the measured time).
    train_images: int = 5_000
    epochs: int = 6
    alphas: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)  # Table 6's width multipliers, widest first
    margin: float = 0.02  # test error the separable net may lose to the full-conv one and still be "small"


def _name(alpha: float) -> str:
    return f"sep{round(100 * alpha):03d}"


def _args(alpha: float, separable: bool) -> dict[str, Any]:
    return {"rows": [list(r) for r in ROWS], "alpha": alpha, "separable": separable}


def _arms(cfg: Config) -> list[Arm]:
    if not cfg.alphas or cfg.alphas[0] != 1.0 or list(cfg.alphas) != sorted(cfg.alphas, reverse=True):
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"config: alphas must start at 1.0 and decrease, got {list(cfg.alphas)}")
    arms = [Arm("conv", "full 3x3 convs (alpha 1.0)", "mobilenet_v1", _args(1.0, False))]
    return arms + [
        Arm(_name(a), f"depthwise separable, alpha {a:g}", "mobilenet_v1", _args(a, True)) for a in cfg.alphas
    ]


def extra(cfg: Config, r: dict[str, Any]) -> dict[str, Any]:
    """Per layer: MACs of the separable layer (depthwise + pointwise) and of its full-conv twin."""
    import torch

    import cnnlab

    def convs(separable: bool) -> dict[str, Any]:
        with torch.device("meta"):
            model = cnnlab.create_model("mobilenet_v1", num_classes=10, **_args(1.0, separable))
        rows = cnnlab.analyze(model, (3, 32, 32)).rows
        return {row.name: row for row in rows if row.leaf and row.kind == "Conv2d" and row.name.startswith("stages")}

    sep, full = convs(True), convs(False)
    layers = []
    for name, row in full.items():  # stages.i.j.conv in the twin is stages.i.j.dw.conv + stages.i.j.pw.conv
        base = name.removesuffix(".conv")
        dw, pw = sep[f"{base}.dw.conv"], sep[f"{base}.pw.conv"]
        m, n, d_f = row.input_shape[1], row.output_shape[1], row.output_shape[-1]
        layers.append({"layer": base, "M": m, "N": n, "D_F": d_f, "separable_macs": dw.macs + pw.macs,
                       "full_macs": row.macs})  # fmt: skip
    lines = ["Each layer of the alpha 1.0 twins (analyzer MACs):", "",
             "| layer | M | N | D_F | separable MACs | full MACs | ratio | 1/N + 1/9 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for x in layers:
        ratio = x["separable_macs"] / x["full_macs"]
        lines.append(f"| {x['layer']} | {x['M']} | {x['N']} | {x['D_F']} | {x['separable_macs']:,} | "
                     f"{x['full_macs']:,} | {ratio:.6f} | {1 / x['N'] + 1 / 9:.6f} |")  # fmt: skip
    arms = r["arms"]
    lines += ["", "Width multiplier (whole net): " + ", ".join(
        f"alpha {a:g}: {arms[_name(a)]['macs'] / arms[_name(1.0)]['macs']:.3f} of the MACs (alpha^2 = {a * a:.3f})"
        for a in cfg.alphas), ""]  # fmt: skip
    return {"layers": layers, "lines": lines}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, test = published("depthwise"), "test_error"
    claims = [
        exact_claim(f"ratio_{x['layer']}", f"{x['layer']}: separable / full MACs = 1/N + 1/9 (N = {x['N']})",
                    x["separable_macs"] / x["full_macs"], 1 / x["N"] + 1 / 9, p["ratio"], rel_tol=1e-12)
        for x in r["analysis"]["layers"]
    ]  # fmt: skip
    one = _name(1.0)
    claims += [
        compare(r, "full_better", "full convs test better than depthwise separable", test, "conv", one, p["loss"]),
        compare(r, "loss_small", f"depthwise separable loses less than {100 * cfg.margin:g} pp of test error",
                test, one, "conv", p["loss"], margin=cfg.margin),
    ]  # fmt: skip
    for wide, thin in zip(cfg.alphas, cfg.alphas[1:]):
        claims.append(compare(r, f"alpha_{_name(thin)}", f"alpha {thin:g} tests worse than alpha {wide:g}", test,
                              _name(wide), _name(thin), p["width"]))  # fmt: skip
    return claims


EXPERIMENT = Experiment(
    name="depthwise",
    claim="depthwise separable convs cost 1/N + 1/9 of full convs for a small loss; thinner costs accuracy",
    source="Howard et al. 2017, arXiv:1704.04861, Sec. 3.1-3.3, Tables 4 and 6",
    config=Config,
    quick={**QUICK, "alphas": (1.0, 0.5)},
    paper={**PAPER, "epochs": 160},
    arms=_arms,
    judge=judge,
    extra=extra,
)
