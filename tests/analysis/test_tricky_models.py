"""Models that break other counting tools."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis import analyze


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.fc = nn.Parameter(torch.randn(10, 8))
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.act(F.conv2d(x, self.w, padding=1))
        y = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)
        return torch.matmul(y, self.fc.t())


def test_functional_ops_are_counted():
    rep = analyze(Functional(), (3, 16, 16))
    assert rep.total_macs == 8 * 16 * 16 * 27 + 8 * 10
    assert rep.total_params == 8 * 27 + 80
    own, act = rep.layers()  # the root's own ops become a row of their own, beside its child's
    assert own.own and own.kind == "Functional (own ops)" and act.kind == "ReLU"
    assert own.macs == rep.total_macs and own.params == rep.total_params
    assert own.kernel is None and rep.rows[0].kernel == (3, 3)


class SharedByThree(nn.Module):
    def __init__(self):
        super().__init__()
        shared = nn.Linear(16, 16)
        self.a = nn.Sequential(shared, nn.ReLU())
        self.b = nn.Sequential(shared, nn.ReLU())
        self.c = nn.Sequential(shared, nn.ReLU())

    def forward(self, x):
        return self.c(self.b(self.a(x)))


def test_shared_module_counts_three_calls_and_its_parameters_once():
    rep = analyze(SharedByThree(), (16,))
    linear = [r for r in rep.rows if r.kind == "Linear"]
    assert [r.name for r in linear] == ["a.0", "b.0", "c.0"]  # the path of each call
    assert [r.call for r in linear] == [1, 2, 3] and all(r.calls == 3 for r in linear)
    assert rep.total_macs == 3 * 16 * 16
    assert rep.total_params == 16 * 16 + 16
    assert [r.params for r in linear] == [272, 0, 0]
    assert sum(r.params for r in rep.layers()) == rep.total_params


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.head = nn.Linear(32, 100, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        return self.head(self.embed(tokens))


def test_tied_weights_count_once():
    rep = analyze(Tied(), inputs=torch.zeros(2, 7, dtype=torch.long))
    assert rep.total_params == 100 * 32
    assert rep.total_macs == 2 * 7 * 32 * 100
    assert sum(r.params for r in rep.layers()) == 100 * 32


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.img = nn.Conv2d(3, 4, 3)
        self.aux = nn.Linear(5, 2)

    def forward(self, batch: dict) -> dict:
        return {"features": self.img(batch["image"]), "aux": self.aux(batch["meta"])}


def test_dict_inputs_and_outputs():
    inputs = {"image": torch.randn(2, 3, 10, 10), "meta": torch.randn(2, 5)}
    rep = analyze(DictModel(), inputs=inputs)
    assert rep.total_macs == 2 * 4 * 8 * 8 * 27 + 2 * 5 * 2
    root = rep.rows[0]
    assert root.output_shape == (2, 4, 8, 8)  # the first tensor of the output
    assert root.activation_bytes == (2 * 4 * 8 * 8 + 2 * 2) * 4  # every output tensor
    assert inputs["image"].device.type == "cpu"  # the caller's inputs are not touched


def test_keyword_inputs():
    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x, *, scale):
            return self.fc(x) * scale

    rep = analyze(KW(), inputs=torch.randn(2, 4), input_kwargs={"scale": torch.ones(2, 3)})
    assert rep.total_macs == 2 * 4 * 3


def test_transposed_conv_counts_from_the_input():
    up = nn.ConvTranspose2d(16, 8, kernel_size=4, stride=2, padding=1, bias=False)
    rep = analyze(up, (16, 7, 7))
    (row,) = rep.layers()
    assert row.output_shape == (1, 8, 14, 14)
    assert rep.total_macs == 16 * 7 * 7 * 8 * 4 * 4  # each input element meets Cout x k x k weights
    grouped = nn.ConvTranspose2d(16, 8, 3, stride=2, groups=4, bias=False)
    assert analyze(grouped, (16, 7, 7)).total_macs == 16 * 7 * 7 * (8 // 4) * 9


def test_depthwise_conv():
    dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
    rep = analyze(dw, (32, 20, 20))
    (row,) = rep.layers()
    assert rep.total_macs == 32 * 20 * 20 * 9
    assert row.groups == 32 and row.kernel == (3, 3) and row.padding == (1, 1)
    assert rep.flops == 2 * rep.total_macs + 32 * 20 * 20  # + bias


class MatMulModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(12, 5))
        self.proj = nn.Linear(12, 12)

    def forward(self, x):  # (B, L, 12)
        q = self.proj(x)
        attn = torch.softmax(q @ x.transpose(1, 2), -1)  # (B, L, L)
        y = torch.einsum("bij,bjd->bid", attn, x)
        return y @ self.w


def test_at_operator_einsum_and_attention():
    rep = analyze(MatMulModel(), (6, 12), batch_size=2)
    b, L, d = 2, 6, 12
    assert rep.total_macs == b * L * d * d + b * L * L * d + b * L * L * d + b * L * d * 5
    assert not rep.unsupported


def test_scaled_dot_product_attention():
    class Attn(nn.Module):
        def forward(self, q):
            return F.scaled_dot_product_attention(q, q, q)

    rep = analyze(Attn(), (4, 10, 8), batch_size=2)
    assert rep.total_macs == 2 * 4 * 10 * 10 * 8 * 2


def test_a_module_called_three_times():
    class Thrice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(self.conv(x)))

    rep = analyze(Thrice(), (4, 8, 8))
    assert rep.total_macs == 3 * 4 * 8 * 8 * 36
    assert [r.call for r in rep.layers()] == [1, 2, 3]
    assert rep.receptive_field == 7
    assert "[2/3]" in rep.to_text()
