"""The lab nets' units: the papers' weight formulas, receptive fields and shapes, counted two ways."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.experiments.costs import conv_cost
from cnnlab.models.labnet import unit

C = 24  # divisible by 4 (the bottleneck's width / 4)


def conv_weights(block: nn.Module) -> int:
    """The slow count: every conv weight tensor's size, read off the module (no analyzer)."""
    return sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    "kind, weights, field",
    [
        ("3x3", 9 * C * C, 3),
        ("5x5", 25 * C * C, 5),
        ("7x7", 49 * C * C, 7),
        ("2x(3x3)", 18 * C * C, 5),
        ("3x(3x3)", 27 * C * C, 7),  # VGG Sec. 2.3
        ("1x3+3x1", 6 * C * C, 3),  # Inception-v3 Sec. 3.2: 33% fewer than 3x3
        ("1x5+5x1", 10 * C * C, 5),
        ("bottleneck", C * C // 4 + 9 * (C // 4) ** 2 + C * C // 4, 3),
    ],
)
def test_unit_weights_field_and_shape(kind, weights, field):
    block = unit(kind, C, C)
    cost = conv_cost(block, (C, 12, 12))
    assert cost["weights"] == conv_weights(block) == weights
    assert cost["receptive_field"] == field
    x = torch.randn(2, C, 12, 12)
    assert block.eval()(x).shape == (2, C, 12, 12) and cost["output_shape"] == [C, 12, 12]
    # MACs: one per weight per output pixel for stride-1 convs.
    assert cost["macs"] == weights * 12 * 12


def test_factorized_unit_is_two_one_dimensional_convs():
    """1x3 then 3x1 with the product of the kernels computes the 3x3 conv it factorizes (rank-1 kernel)."""
    block = unit("1x3+3x1", 1, 1)
    row, col = block.conv1xk.conv, block.convkx1.conv
    x = torch.randn(1, 1, 9, 9)
    full = (col.weight.reshape(3, 1) @ row.weight.reshape(1, 3)).reshape(1, 1, 3, 3)
    assert torch.allclose(F.conv2d(F.conv2d(x, row.weight, padding=(0, 1)), col.weight, padding=(1, 0)),
                          F.conv2d(x, full, padding=1), atol=1e-5)  # fmt: skip


def test_nets_differing_only_in_units_have_the_same_shapes_and_field():
    shapes, fields = set(), set()
    for kinds in (["7x7"] * 3, ["3x(3x3)"] * 3):
        model = cnnlab.create_model("labnet", units=kinds, widths=[8, 16, 32], stem_channels=8)
        rep = cnnlab.analyze(model, (3, 32, 32))
        shapes.add(tuple(model.features(torch.randn(1, 3, 32, 32)).shape))
        fields.add(rep.receptive_field)
    assert len(shapes) == 1 and len(fields) == 1


@pytest.mark.parametrize("units, message", [(["4x4"] * 3, "odd kernel"), (["3x5"] * 3, "unknown unit"),
                                              (["3x3"] * 2, "one unit per stage")])  # fmt: skip
def test_bad_units_are_one_line(units, message):
    with pytest.raises((ValueError, CnnlabError), match=message):
        cnnlab.create_model("labnet", units=units)
