"""Every zoo model analyses cleanly: every op has a formula, branches are aligned, published MACs come out."""

from __future__ import annotations

import warnings

import pytest

import cnnlab
from cnnlab.analysis import analyze


def test_a_few_zoo_models():
    for name in ("lenet5", "resnet20", "squeezenet1_1"):
        if name in cnnlab.list_models():
            rep = analyze(name)
            assert not rep.unsupported and not rep.warnings and rep.total_macs > 0


@pytest.mark.slow
def test_every_zoo_model():
    for name in cnnlab.list_models():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unsupported op or a misaligned merge would warn
            rep = analyze(name)
        published = cnnlab.model_info(name).published.gmacs
        if published is not None:
            decimals = len(repr(published).split(".")[1])
            assert abs(rep.total_macs / 1e9 - published) <= 0.5 * 10**-decimals, name
