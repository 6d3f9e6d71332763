"""`bfloat16`: bf16 trains to fp32's accuracy with the same hyper-parameters and no loss scaling (Kalamkar et al.
2019, arXiv:1905.12322), and where the CPU has bf16 instructions it trains faster.

A lab net (labnet: 3x3 conv-BN-ReLU units at widths 32-64-128, one per stage) on CIFAR-10, with one recipe:
  * fp32;
  * bf16 emulated: weights, activations, gradients and updates rounded to bf16 (round-to-nearest-even, fp32
    master weights, no loss scaling), on any CPU -- the numerics, at fp32's speed or slower;
  * bf16 autocast (only on a CPU with native bf16, AVX512-BF16 or AMX: cnnlab.machine.cpu_has_native_bf16()):
    the engine's real torch.autocast (recipe precision = "bf16"), whose convs run in bf16 -- the numerics and the
    speed. On a CPU without it the arm is not run and the report says so.
The speed is each trial's own training clock (summary.json's train_seconds, its steps' time without evaluation)
per optimizer step, paired by seed with the fp32 trial of the same seed (run minutes before it, seed-major).

Claims, fixed before any run, paired over seeds (stats.RULE): the emulated bf16 net, and the autocast one, each
cost less than `margin` (2 pp) of test error against fp32; the autocast step is faster than fp32's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.experiments import precision_lab as lab
from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment, Setup
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare

BF16 = {"weights": "bf16", "activations": "bf16", "gradients": "bf16", "update": "bf16", "master": True}
LABNET = {"widths": [32, 64, 128], "units": ["3x3", "3x3", "3x3"], "depth": 1}


@dataclass(frozen=True)
class Config(Setup):
    train_images: int = 5_000
    epochs: int = 8
    model: str = "labnet"
    native: bool = True  # run the autocast arm where the CPU has bf16 instructions (false: the emulation only)
    margin: float = 0.02  # bf16 within this much test error of fp32


def native_here(cfg: Config) -> bool:
    from cnnlab.machine import cpu_has_native_bf16

    return cfg.native and cpu_has_native_bf16()


def _arms(cfg: Config) -> list[Arm]:
    if not 0 <= cfg.margin < 1:
        raise CnnlabError(f"config: margin must be in [0, 1), got {cfg.margin}")
    args = dict(LABNET) if cfg.model == "labnet" else {}
    emulated = "bf16 emulated (fp32 masters, no scaling)"
    arms = [Arm("fp32", "fp32", cfg.model, args), Arm("emulated", emulated, cfg.model, args, {"emulate": dict(BF16)})]
    if native_here(cfg):
        arms.append(Arm("autocast", "bf16 autocast (native)", cfg.model, args, {"precision": "bf16"}))
    return arms


def evaluate(cfg: Config, r: dict[str, Any], out: Path, device: str, log: Any) -> dict[str, Any]:
    """The counters, and each trial's training clock per optimizer step (ms)."""
    done = lab.add_counters(r, out)
    for t in r["trials"]:
        t["step_ms"] = 1000 * t["seconds"] / max(1, t["steps"][-1])
    return {**done, "native_bf16": native_here(cfg), "step_ms": "summary.json train_seconds / optimizer steps"}


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, m = published("bfloat16"), 100 * cfg.margin
    claims = [compare(r, "emulated", f"bf16 (emulated) costs less than {m:g} pp against fp32", "test_error",
                      "emulated", "fp32", p["accuracy"], margin=cfg.margin)]  # fmt: skip
    if "autocast" in r["arms"]:
        claims += [
            compare(r, "autocast", f"bf16 (autocast) costs less than {m:g} pp against fp32", "test_error",
                    "autocast", "fp32", p["accuracy"], margin=cfg.margin),
            compare(r, "speed", "the bf16 autocast step is faster than fp32's", "step_ms", "autocast", "fp32",
                    p["speed"], unit="ms/step"),
        ]  # fmt: skip
    return claims


def report(cfg: Config, r: dict[str, Any], out: Path) -> list[str]:
    from cnnlab.experiments import stats

    names = list(r["arms"])
    lines = ["Training clock per optimizer step (summary.json train_seconds / steps; mean ± std over seeds):", "",
             "| arm | ms/step | vs fp32 |", "|---|---:|---:|"]  # fmt: skip
    fp32 = {t["seed"]: t["step_ms"] for t in r["trials"] if t["arm"] == "fp32"}
    for name in names:
        mine = [t for t in r["trials"] if t["arm"] == name]
        ms = stats.mean_std([t["step_ms"] for t in mine])
        speed = stats.mean_std([fp32[t["seed"]] / t["step_ms"] for t in mine])
        lines.append(f"| {r['arms'][name]['label']} | {ms['mean']:.1f}" + ("" if ms["std"] is None else
                     f" ± {ms['std']:.1f}") + f" | {speed['mean']:.2f}x |")  # fmt: skip
    if "autocast" not in r["arms"]:
        why = "`native = false`" if not cfg.native else "this CPU has no native bf16 (AVX512-BF16 / AMX)"
        lines += ["", f"The autocast arm was not run: {why}; only the emulated numerics were measured."]
    return [*lines, "", "Accuracy beside the counters:", "", *lab.counters_table(r, names)]


EXPERIMENT = Experiment(
    name="bfloat16",
    claim="bf16 trains to fp32's accuracy with the same recipe and no loss scaling, faster where the CPU has bf16",
    source="Kalamkar et al. 2019, arXiv:1905.12322; REFERENCES.md section 8",
    config=Config,
    quick={**QUICK, "train_images": 300, "test_images": 200, "epochs": 1, "seeds": 2},
    paper={**PAPER, "epochs": 60},
    arms=_arms,
    judge=judge,
    evaluate=evaluate,
    report=report,
)
