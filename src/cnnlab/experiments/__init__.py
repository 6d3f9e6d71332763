"""The lecture's claims as experiments: `cnnlab reproduce NAME` (docs/reproduce.md).

`EXPERIMENTS` is the registration: one module per experiment, each defining `EXPERIMENT` (base.Experiment).
"""

from __future__ import annotations

from cnnlab.errors import UnknownNameError
from cnnlab.experiments import (
    alexnet_tricks,
    augmentation,
    aux_heads,
    bfloat16,
    binary,
    bottleneck,
    cardinality,
    data_pipeline,
    degradation,
    depthwise,
    factorize,
    half,
    preact,
    rounding,
    scaling,
    small_filters,
    test_time,
    transfer,
)
from cnnlab.experiments.base import Experiment

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        degradation.EXPERIMENT,
        preact.EXPERIMENT,
        small_filters.EXPERIMENT,
        bottleneck.EXPERIMENT,
        factorize.EXPERIMENT,
        depthwise.EXPERIMENT,
        cardinality.EXPERIMENT,
        transfer.EXPERIMENT,
        augmentation.EXPERIMENT,
        aux_heads.EXPERIMENT,
        alexnet_tricks.EXPERIMENT,
        scaling.EXPERIMENT,
        test_time.EXPERIMENT,
        data_pipeline.EXPERIMENT,
        rounding.EXPERIMENT,  # the numerical-precision lab (docs/precision.md)
        half.EXPERIMENT,
        bfloat16.EXPERIMENT,
        binary.EXPERIMENT,
    )
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise UnknownNameError("experiment", name, [*EXPERIMENTS, "all", "list"])
    return EXPERIMENTS[name]
