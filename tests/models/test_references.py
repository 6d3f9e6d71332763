"""Every published parameter count, exactly: torchvision's metadata and the papers of the models it lacks.

The figures are the zoo's `published` tables and cnnlab/references.toml; tests/test_references_agree.py checks
both against REFERENCES.md.
"""

from __future__ import annotations

import torch

import cnnlab
from cnnlab.registry import get_entry
from tests.conftest import torchvision_table

# torchvision's GoogLeNet figure is without its two auxiliary heads (references.toml, params_without_aux).
COUNTED_AS = {"googlenet": {"aux_logits": False}}


def _params(name: str, num_classes: int = 1000, **overrides) -> int:
    with torch.device("meta"):
        model = cnnlab.create_model(name, num_classes=num_classes, **overrides)
    return sum(p.numel() for p in model.parameters())


def test_table1_is_parsed():
    assert len(torchvision_table()) >= 40


def test_table1_models_exist_with_exact_params_and_metadata():
    failures = []
    for name, (params, gmacs, crop, top1) in torchvision_table().items():
        if name not in cnnlab.list_models():
            failures.append(f"{name}: not registered")
            continue
        got = _params(name, **COUNTED_AS.get(name, {}))
        info = cnnlab.model_info(name)
        if got != params:
            failures.append(f"{name}: {got:,} params, published {params}")
        if info.input_size[1:] != (crop, crop):
            failures.append(f"{name}: default input {info.input_size}, eval crop {crop}")
        if gmacs is None or top1 is None:  # their values are checked against REFERENCES.md where it is present
            failures.append(f"{name}: model_info published {info.published} lacks torchvision's GMACs or top-1")
    assert not failures, "\n".join(failures)


def _published_params(name: str) -> int | None:
    return get_entry(name).family.published[name].params if name in cnnlab.list_models() else None


def test_table2_exact_counts():
    # The papers' counts of models torchvision lacks (LeCun 1998; He 2015, Table 6; Hu 2018; Howard 2017;
    # Szegedy 2016), as the zoo's published tables carry them.
    checks = [("lenet5", {"num_classes": 10})]
    cifar = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"]
    checks += [(n, {"num_classes": 10}) for n in cifar]
    checks += [("se_resnet50", {}), ("se_resnext50_32x4d", {})]
    checks += [("mobilenet_v1", {})]
    checks += [("inception_v4", {}), ("inception_resnet_v2", {})]
    checks = [(name, kw, _published_params(name)) for name, kw in checks]
    failures = []
    for name, kw, want in checks:
        if name not in cnnlab.list_models():
            failures.append(f"{name}: not registered")
        elif (got := _params(name, **kw)) != want:
            failures.append(f"{name}: {got:,} params, published {want}")
    assert not failures, "\n".join(failures)
