"""`rounding`: 16-bit fixed point trains with stochastic rounding where round-to-nearest stalls (Gupta et al. 2015,
arXiv:1502.02551, Sec. 3-4).

LeNet-5 on MNIST (its digits centred in 32 x 32) and the same LeNet-5 on CIFAR-10 (a small CNN: three input
channels), each trained in fp32 and in fixed point <IL, FL> with 16-bit words, IL = 16 - FL, for FL in `fls`:
weights, layer outputs (activations), gradients and weight updates all rounded to <IL, FL>, no fp32 master copy
(the weights are stored in the format), with round-to-nearest or stochastic rounding (Gupta et al. Sec. 3) for
all four. SGD at Gupta et al.'s small rate (0.01, batch 100; momentum 0.9, the engine's default) decaying to zero
(cosine), so that most updates fall below eps/2 = 2^-(FL+1), more so late in the run, where round-to-nearest
drops them and stochastic rounding keeps them in expectation. Each arm's curves are in rounding.png, its lost
updates and saturations (values clipped to the range +-2^(IL-1)) in the counters table.

Claims, fixed before any run, per task and FL, paired over seeds (stats.RULE): (a) round-to-nearest tests worse
than stochastic rounding; (b) stochastic rounding costs less than `margin` (2 pp) of test error against fp32.
"Nearest stalls where stochastic does not" at an FL is (a) and (b) both agreeing; the report says, per FL,
whether it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.experiments import precision_lab as lab
from cnnlab.experiments.base import PAPER, QUICK, Arm, Experiment
from cnnlab.experiments.published import published
from cnnlab.experiments.runner import compare
from cnnlab.precision.formats import fixed_in_word


@dataclass(frozen=True)
class Config(lab.TwoTasks):
    train_images: int = 5_000  # per task
    test_images: int = 2_000
    epochs: int = 8
    batch_size: int = 100  # Gupta et al.'s mini-batch
    lr: float = 0.01  # Gupta et al.'s MNIST rate; with the cosine decay most late updates are below eps/2
    weight_decay: float = 5e-4
    augment: str = ""  # none, as the paper's nets
    model: str = "lenet5"
    word: int = 16  # bits per fixed-point value (sign included)
    fls: tuple[int, ...] = (8, 10, 12, 14)  # fraction bits; IL = word - FL
    margin: float = 0.02  # claim (b): stochastic rounding within this much test error of fp32


def fmt(cfg: Config, fl: int) -> str:
    """<IL, FL> in a `word`-bit word; a FL outside the word is one line (fixed_in_word's)."""
    return fixed_in_word(cfg.word, fl).name


def emulation(cfg: Config, fl: int, rounding: str) -> dict[str, Any]:
    f = fmt(cfg, fl)
    return {"weights": f, "activations": f, "gradients": f, "update": f, "rounding": rounding, "master": False}


def arm_name(task: str, rounding: str, fl: int) -> str:
    return f"{task}-{rounding[0]}{fl}"  # e.g. mnist-n14, cifar10-s8


def _arms(cfg: Config) -> list[Arm]:
    lab.check_tasks(cfg)
    fls = list(cfg.fls)
    if not fls or fls != sorted(set(fls)):
        raise CnnlabError(f"config: fls must be increasing fraction-bit counts, got {fls}")
    for fl in fls:
        fmt(cfg, fl)  # FL outside the word: one line, before any directory or data
    if not 0 <= cfg.margin < 1:
        raise CnnlabError(f"config: margin must be in [0, 1), got {cfg.margin}")
    arms = []
    for task in cfg.tasks:
        data, name = lab.arm_data(task), lab.TASK_LABELS[task]
        arms.append(Arm(f"{task}-fp32", f"{name} fp32", cfg.model, data=data))
        for fl in fls:
            for rounding in ("nearest", "stochastic"):
                arms.append(Arm(arm_name(task, rounding, fl), f"{name} {fmt(cfg, fl)} {rounding}", cfg.model,
                                recipe={"emulate": emulation(cfg, fl, rounding)}, data=data))  # fmt: skip
    return arms


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, m = published("rounding"), 100 * cfg.margin
    claims = []
    for task in cfg.tasks:
        name, fp32 = lab.TASK_LABELS[task], f"{task}-fp32"
        for fl in cfg.fls:
            f, near, sto = fmt(cfg, fl), arm_name(task, "nearest", fl), arm_name(task, "stochastic", fl)
            claims.append(compare(r, f"{task}_{fl}_nearest", f"{name} {f}: round-to-nearest tests worse than "
                                  "stochastic rounding", "test_error", sto, near, p["nearest"]))  # fmt: skip
            claims.append(compare(r, f"{task}_{fl}_stochastic", f"{name} {f}: stochastic rounding costs less than "
                                  f"{m:g} pp against fp32", "test_error", sto, fp32, p["stochastic"],
                                  margin=cfg.margin))  # fmt: skip
    return claims


def stalls(r: dict[str, Any], task: str, fl: int) -> str:
    """'yes' when both of an FL's claims agree, 'no' when either does not agree, else 'inconclusive'."""
    from cnnlab.experiments import stats

    mine = [c["verdict"] for c in r["claims"] if c["key"] in (f"{task}_{fl}_nearest", f"{task}_{fl}_stochastic")]
    if all(v.startswith(stats.AGREES) for v in mine):
        return "yes"
    return "no" if any(v.startswith(stats.DISAGREES) for v in mine) else "inconclusive"


def report(cfg: Config, r: dict[str, Any], out: Path) -> list[str]:
    lab.curves_figure(r, out, "rounding.png", [
        (f"{lab.TASK_LABELS[task]} {fmt(cfg, fl)}", [f"{task}-fp32", arm_name(task, "nearest", fl),
                                                     arm_name(task, "stochastic", fl)])
        for task in cfg.tasks for fl in cfg.fls])  # fmt: skip
    lines = [*lab.data_line(r, cfg), "Does round-to-nearest stall where stochastic rounding does not (both claims "
             "of the FL agree)?", "", "| task | " + " | ".join(fmt(cfg, fl) for fl in cfg.fls) + " |",
             "|---|" + "---|" * len(cfg.fls)]  # fmt: skip
    for task in cfg.tasks:
        lines.append(f"| {lab.TASK_LABELS[task]} | " + " | ".join(stalls(r, task, fl) for fl in cfg.fls) + " |")
    lines += ["", "![held-out error per epoch: fp32, round-to-nearest and stochastic rounding per FL](rounding.png)",
              "", *lab.counters_table(r, list(r["arms"]))]  # fmt: skip
    return lines


EXPERIMENT = Experiment(
    name="rounding",
    claim="16-bit fixed point trains with stochastic rounding where round-to-nearest stalls",
    source="Gupta et al. 2015, arXiv:1502.02551, Sec. 3-4; REFERENCES.md section 8",
    config=Config,
    quick={
        **QUICK,
        "train_images": 400,
        "test_images": 200,
        "epochs": 2,
        "seeds": 2,
        "batch_size": 50,
        "fls": (8,),
    },  # fmt: skip
    paper={**PAPER, "epochs": 30},
    arms=_arms,
    judge=judge,
    needs_channels=3,  # `data` is CIFAR-10; MNIST comes through `mnist`
    datasets=lab.mnist_dataset,
    evaluate=lab.evaluate,
    report=report,
)
