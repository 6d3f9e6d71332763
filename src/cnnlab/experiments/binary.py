"""`binary`: 1-bit weights (BinaryConnect, Courbariaux et al. 2015, arXiv:1511.00363) and 1-bit activations
(BinaryNet, Hubara, Courbariaux et al. 2016, arXiv:1602.02830) train nearly as well as fp32.

A small lab net (labnet: 3x3 conv-BN-ReLU units at widths 16-32-64, one per stage, global pooling, one linear
layer; BinaryConnect's nets have a norm layer after every layer too) on MNIST and on a CIFAR-10 subset, trained
with Adam and no regularizer (no weight decay, no augmentation: BinaryConnect's baseline is the net "without
regularizer", and binarization is the regularizer):
  * fp32;
  * BinaryConnect deterministic: every conv and linear uses sign(w) forward and backward; the gradient updates
    real-valued weights clipped to [-1, 1]; tested with sign(w);
    the real-valued weights start from U(-1, 1) and each layer's update is scaled by Glorot's coefficient
    1/sqrt(1.5/(fan_in + fan_out)), as the paper scales its learning rates (emulate.binary_init, binary_lr_scale);
  * BinaryConnect stochastic: w_b = +1 with probability hard_sigmoid(w); tested with the real-valued weights
    (Sec. 2.6);
  * BinaryNet (MNIST only): binary weights and sign() activations, with the straight-through estimator
    g * 1{|x| <= 1}.

Claims, fixed before any run, paired over seeds (stats.RULE): on CIFAR-10, deterministic BinaryConnect tests
better than fp32 without regularizer and stochastic better than deterministic (the paper's order: 10.64%,
9.90%, 8.27% test error); on MNIST,
deterministic and stochastic BinaryConnect and BinaryNet each cost less than `margin` (2 pp) against fp32.
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

LABNET = {"widths": [16, 32, 64], "units": ["3x3", "3x3", "3x3"], "depth": 1, "stem_channels": 16}
# (arm suffix, label, emulate table, tasks)
VARIANTS = (
    ("fp32", "fp32", {}, lab.TASKS),
    ("det", "BinaryConnect deterministic", {"weights": "binary", "weights_rounding": "nearest"}, lab.TASKS),
    ("sto", "BinaryConnect stochastic", {"weights": "binary", "weights_rounding": "stochastic"}, lab.TASKS),
    ("bnn", "BinaryNet (binary weights and activations)", {"weights": "binary", "activations": "binary"},
     ("mnist",)),
)  # fmt: skip


@dataclass(frozen=True)
class Config(lab.TwoTasks):
    train_images: int = 5_000  # per task: MNIST, and the CIFAR-10 subset
    test_images: int = 2_000
    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adamw"  # Adam (weight decay 0): BinaryConnect trains its CIFAR-10 net with Adam, BinaryNet all
    lr: float = 0.003
    weight_decay: float = 0.0  # no regularizer
    augment: str = ""
    model: str = "labnet"
    margin: float = 0.02  # MNIST: each binary arm within this much test error of fp32


def _arms(cfg: Config) -> list[Arm]:
    lab.check_tasks(cfg)
    if not 0 <= cfg.margin < 1:
        raise CnnlabError(f"config: margin must be in [0, 1), got {cfg.margin}")
    args = dict(LABNET) if cfg.model == "labnet" else {}
    arms = []
    for task in cfg.tasks:
        for v, label, table, tasks in VARIANTS:
            if task in tasks:
                recipe = {"optimizer": cfg.optimizer, **({"emulate": dict(table)} if table else {})}
                arms.append(Arm(f"{task}-{v}", f"{lab.TASK_LABELS[task]} {label}", cfg.model, args, recipe,
                                data=lab.arm_data(task)))  # fmt: skip
    return arms


def judge(cfg: Config, r: dict[str, Any]) -> list[dict[str, Any]]:
    p, m = published("binary"), 100 * cfg.margin
    claims = []
    if "cifar10" in cfg.tasks:
        claims += [
            compare(r, "cifar_det", "CIFAR-10: deterministic BinaryConnect tests better than fp32 (no regularizer)",
                    "test_error", "cifar10-det", "cifar10-fp32", p["cifar"]),
            compare(r, "cifar_sto", "CIFAR-10: stochastic BinaryConnect tests better than deterministic",
                    "test_error", "cifar10-sto", "cifar10-det", p["cifar"]),
        ]  # fmt: skip
    if "mnist" in cfg.tasks:
        for v, text, why in (("det", "deterministic BinaryConnect", "mnist"), ("sto", "stochastic BinaryConnect",
                             "mnist"), ("bnn", "BinaryNet", "binarynet")):  # fmt: skip
            claims.append(compare(r, f"mnist_{v}", f"MNIST: {text} costs less than {m:g} pp against fp32",
                                  "test_error", f"mnist-{v}", "mnist-fp32", p[why], margin=cfg.margin))  # fmt: skip
    return claims


def report(cfg: Config, r: dict[str, Any], out: Path) -> list[str]:
    lab.curves_figure(r, out, "binary.png", [
        (lab.TASK_LABELS[task], [f"{task}-{v}" for v, _, _, tasks in VARIANTS if task in tasks])
        for task in cfg.tasks])  # fmt: skip
    return [*lab.data_line(r, cfg), "![held-out error per epoch, per task](binary.png)", "",
            *lab.counters_table(r, list(r["arms"]))]  # fmt: skip


EXPERIMENT = Experiment(
    name="binary",
    claim="binary weights (BinaryConnect) and binary activations (BinaryNet) train nearly as well as fp32",
    source="Courbariaux et al. 2015, arXiv:1511.00363, Sec. 2; Hubara et al. 2016, arXiv:1602.02830; "
    "REFERENCES.md section 8",
    config=Config,
    quick={**QUICK, "train_images": 300, "test_images": 200, "epochs": 1, "seeds": 2, "batch_size": 50},
    paper={**PAPER, "epochs": 500},
    arms=_arms,
    judge=judge,
    needs_channels=3,  # `data` is CIFAR-10; MNIST comes through `mnist`
    datasets=lab.mnist_dataset,
    evaluate=lab.evaluate,
    report=report,
)
