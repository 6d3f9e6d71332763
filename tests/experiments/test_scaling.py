"""`scaling`: the arms' MACs match their targets at their own resolution, the compound arms follow Eq. 3, bad input
is one line, and a quick run's MAC claims agree with a fresh analyzer count."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.experiments import EXPERIMENTS
from cnnlab.experiments.base import make_config
from cnnlab.experiments.scaling import EXPERIMENT, _augment, model_args, multipliers, plan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _macs(model_args: dict, px: int) -> int:
    """A fresh count: the strict factory on the meta device, the analyzer at px x px."""
    with torch.device("meta"):
        model = cnnlab.create_model("efficientnet_b0", num_classes=10, **model_args)
    return cnnlab.analyze(model, (3, px, px)).total_macs


def test_full_arms_match_their_mac_targets_and_compound_follows_eq_3():
    cfg = make_config(EXPERIMENT, "full")
    arms, rows = EXPERIMENT.arms(cfg), plan(cfg)
    assert [a.name for a in arms] == [p["name"] for p in rows] and len(arms) == 1 + 4 * 2
    args = {a.name: {k: tuple(map(tuple, v)) if k == "rows" else v for k, v in a.model_args.items()} for a in arms}
    base = _macs(args["base"], 32)
    for arm, p in zip(arms, rows):
        px = arm.recipe["image_size"]
        assert _macs(args[arm.name], px) == pytest.approx(p["target"] * base, rel=cfg.tolerance), arm.name
        d, w = arm.model_args["depth"], arm.model_args["width"]
        if p["rule"] == "compound":
            phi = p["s"]
            assert (d, w, px) == (1.2**phi, 1.1**phi, round(32 * 1.15**phi))
        else:  # a single rule moves its own dimension only
            moved = {"depth": d != 1, "width": w != 1, "resolution": px != 32}
            assert [k for k, v in moved.items() if v] == ([] if p["rule"] == "base" else [p["rule"]])
    # The grid point is the nearest: neither neighbour 0.01 away comes closer to the target.
    for p in rows[1:]:
        gap = []
        for step in (-0.01, 0.0, 0.01):
            d, w, px = multipliers(cfg, p["rule"], round(p["s"] + step, 2))
            gap.append(abs(math.log(_macs(model_args(cfg, d, w, px), px) / (p["target"] * base))))
        assert gap[1] <= min(gap), p["name"]


def test_resolution_arms_pad_their_crops_in_proportion():
    assert _augment("flip,crop:4", 2.0) == "flip,crop:8"
    assert _augment("rcrop:28,flip,crop:4,cutout:8", 1.25) == "rcrop:28,flip,crop:5,cutout:10"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"targets": [0.5, 2.0]}, "targets must be distinct MAC multiples above 1"),
        ({"rules": ["depht", "compound"]}, "unknown scaling rule 'depht'; did you mean depth"),
        ({"rules": ["depth", "width"]}, "include compound"),
        ({"repeats": [1, 2]}, "repeats needs 3 counts"),
        ({"gamma": 0.9}, "alpha, beta, gamma must be >= 1"),
    ],
)
def test_bad_config_is_one_line(changes, message):
    with pytest.raises(CnnlabError, match=message) as e:
        EXPERIMENT.arms(make_config(EXPERIMENT, "full", changes))
    assert "\n" not in str(e.value)


def check_quick_dir(out: Path) -> None:
    """A finished quick run: scaling.png, and each MAC claim equal to a fresh count at the trained image size."""
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    r = json.loads((out / "results.json").read_text())
    size = {}
    for t in r["trials"]:
        size[t["arm"]] = tomllib.loads((out / t["run_dir"] / "recipe.toml").read_text())["image_size"]
    fresh = {}
    for name, a in r["arms"].items():
        args = {k: tuple(map(tuple, v)) if k == "rows" else v for k, v in a["model_args"].items()}
        fresh[name] = _macs(args, size[name])
    claims = [c for c in r["claims"] if c["key"].startswith("macs_")]
    assert len(claims) == len(r["arms"]) - 1
    for c in claims:
        name = c["key"].removeprefix("macs_")
        target = r["analysis"]["arms"][name]["target"]
        assert c["measured"] == fresh[name] and c["expected"] == round(target * fresh["base"])
        assert c["verdict"].startswith("agrees")


def test_quick_run_draws_its_plot_and_its_mac_claims_recount(request):
    if "scaling" not in EXPERIMENTS:
        pytest.skip("scaling is not registered in cnnlab.experiments.EXPERIMENTS yet")
    check_quick_dir(request.getfixturevalue("quick_all") / "scaling")
