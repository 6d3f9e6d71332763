"""Training under emulated formats: the counters count what they say, the update rules hold, resume is exact."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.precision import binarize, emulate, parse_emulation, quantize
from cnnlab.train.checkpoint import CheckpointDir, load_weights
from cnnlab.train.loop import train
from cnnlab.train.recipe import load_recipe
from tests.train.conftest import TINY


def _one_weight(w: float, table: dict) -> tuple[nn.Linear, object]:
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(w)
    return lin, emulate(lin, parse_emulation(table))


def _step(lin: nn.Linear, emu, lr: float, x: float = 1.0, grad_scale: float = 1.0) -> bool:
    """One SGD step on loss = grad_scale * w * x: the gradient is grad_scale * x, the update lr * that."""
    opt = torch.optim.SGD(lin.parameters(), lr=lr)
    opt.zero_grad(set_to_none=True)
    loss = grad_scale * lin(torch.tensor([[x]])).sum()
    return emu.step(loss, opt, lin, grad_clip=0.0)


def test_fp16_without_masters_loses_an_update_below_half_an_ulp_and_masters_keep_it():
    # fp16 spacing at 1.0 is 2^-10; an update of 1e-4 is below half of it (Micikevicius et al. Sec. 3.1)
    lin, emu = _one_weight(1.0, {"weights": "fp16", "master": False})
    assert _step(lin, emu, lr=1e-4)
    assert lin.weight.item() == 1.0
    row = emu.flush()
    assert (row["updates_nonzero"], row["updates_lost"]) == (1, 1)

    lin, emu = _one_weight(1.0, {"weights": "fp16", "master": True})
    _step(lin, emu, lr=1e-4)
    assert lin.weight.item() == pytest.approx(1.0 - 1e-4)  # the fp32 master moved
    assert emu.flush()["updates_lost"] == 0
    # ... while the forward pass still sees the fp16 weight, 1.0
    assert lin(torch.tensor([[1.0]])).item() == 1.0


def test_an_update_above_half_an_ulp_is_kept():
    lin, emu = _one_weight(1.0, {"weights": "fp16", "master": False})
    _step(lin, emu, lr=1e-3)
    assert lin.weight.item() == quantize(torch.tensor(1.0 - 1e-3), "fp16").item() != 1.0
    assert emu.flush()["updates_lost"] == 0


def test_gradients_below_fp16s_subnormals_flush_and_loss_scaling_keeps_them():
    lin, emu = _one_weight(0.5, {"gradients": "fp16"})
    _step(lin, emu, lr=1e6, grad_scale=1e-9)  # 1e-9 < 2^-25, half fp16's smallest subnormal
    row = emu.flush()
    # the output's gradient flushes, so the weight's gradient is an exact zero (not counted again)
    assert (row["grads_nonzero"], row["grads_flushed"]) == (1, 1)
    assert lin.weight.item() == 0.5  # nothing arrived

    lin, emu = _one_weight(0.5, {"gradients": "fp16", "loss_scale": 2.0**20})
    _step(lin, emu, lr=1e6, grad_scale=1e-9)
    assert emu.flush()["grads_flushed"] == 0
    assert lin.weight.item() == pytest.approx(0.5 - 1e-3, rel=1e-5)  # unscaled in fp32, then applied


def test_an_overflowing_gradient_skips_the_step_and_halves_a_dynamic_scale():
    lin, emu = _one_weight(0.5, {"gradients": "fp16", "loss_scale": "dynamic", "init_scale": 2.0**16})
    assert not _step(lin, emu, lr=1.0, grad_scale=10.0)  # 10 * 65536 > 65504: inf in fp16
    row = emu.flush()
    assert row["overflows"] >= 1 and row["skipped_steps"] == 1
    assert row["loss_scale"] == 2.0**15
    assert lin.weight.item() == 0.5
    assert _step(lin, emu, lr=1.0, grad_scale=1.0)  # fits now: applied, unscaled
    assert lin.weight.item() == pytest.approx(-0.5)


def test_fixed_point_saturation_is_counted():
    lin, emu = _one_weight(4.0, {"activations": "fixed<4,12>"})
    lin.train()
    out = lin(torch.tensor([[3.0]]))  # 12 > 8 - 2^-12
    assert out.item() == 8 - 2**-12
    assert emu.flush()["saturations"] == 1


def test_stochastic_rounding_keeps_small_updates_on_average():
    # Gupta et al. Sec. 3: round-to-nearest loses every update below eps/2; stochastic keeps them in expectation
    eps = 2.0**-8
    torch.manual_seed(0)
    for rounding, moved in (("nearest", False), ("stochastic", True)):
        lin, emu = _one_weight(0.5, {"weights": "fixed<8,8>", "rounding": rounding, "master": False})
        for _ in range(400):
            _step(lin, emu, lr=eps / 10)  # each update is a tenth of a step
        drift = 0.5 - lin.weight.item()
        if moved:
            assert drift == pytest.approx(400 * eps / 10, rel=0.25)
        else:
            assert drift == 0.0


def test_binaryconnect_forward_uses_sign_and_backward_is_straight_through():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    binarize(lin, "deterministic")
    w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
    x = torch.randn(4, 5)
    lin.train()
    out = lin(x)
    wb = torch.where(w >= 0, 1.0, -1.0).requires_grad_(True)
    ref = F.linear(x, wb, b)
    assert torch.equal(out, ref)  # exactly sign(w), the bias real-valued
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    assert torch.equal(lin.weight.grad, wb.grad)  # the STE: dL/dw = dL/dw_b


def test_binaryconnect_clips_the_masters_and_stochastic_tests_with_real_weights():
    torch.manual_seed(0)
    lin = nn.Linear(4, 2)
    emu = binarize(lin, "stochastic")
    assert lin.weight.abs().max() <= 1
    opt = torch.optim.SGD(lin.parameters(), lr=100.0)  # a huge step pushes the masters past +-1
    emu.step(lin(torch.randn(8, 4)).sum(), opt, lin, 0.0)
    assert lin.weight.abs().max().item() == 1.0
    lin.eval()
    x = torch.randn(3, 4)
    assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))  # BinaryConnect Sec. 2.6


def test_binary_weights_start_uniform_in_minus_one_one_unless_kept():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3)
    kaiming = conv.weight.detach().clone()
    binarize(conv, "stochastic", seed=3)
    w = conv.weight.detach()
    assert w.abs().max() <= 1 and w.abs().max() > 0.99  # U(-1, 1): the paper's Glorot U(-H, H) in units of H
    assert w.var().item() == pytest.approx(1 / 3, rel=0.05) and abs(w.mean().item()) < 0.01
    assert not torch.equal(torch.sign(w), torch.sign(kaiming))  # redrawn, not the init rescaled
    again = nn.Conv2d(64, 64, 3)
    binarize(again, "stochastic", seed=3)
    assert torch.equal(again.weight, conv.weight)  # drawn from the seed
    kept = nn.Conv2d(8, 8, 3)
    before = kept.weight.detach().clone()
    binarize(kept, init="keep")
    assert torch.equal(kept.weight, before.clamp(-1, 1))
    with pytest.raises(CnnlabError, match="unknown binary_init 'gaussian'"):
        parse_emulation({"weights": "binary", "binary_init": "gaussian"})


@pytest.mark.parametrize("scale, factor", [("glorot", 2.0), ("none", 1.0)])
def test_binary_weight_updates_are_scaled_by_glorots_coefficient(scale, factor):
    lin = nn.Linear(4, 2, bias=False)  # fan_in + fan_out = 6: 1 / sqrt(1.5 / 6) = 2
    emu = emulate(lin, parse_emulation({"weights": "binary", "binary_lr_scale": scale}))
    with torch.no_grad():
        lin.weight.fill_(0.25)
    x = torch.tensor([[1.0, -2.0, 0.5, 0.0]])
    opt = torch.optim.SGD(lin.parameters(), lr=0.01)
    emu.step(lin(x).sum(), opt, lin, grad_clip=0.0)
    sgd = -0.01 * x.expand(2, 4)  # the gradient of sum(w_b x) is x for each row (STE)
    assert torch.allclose(lin.weight.detach() - 0.25, factor * sgd)
    with pytest.raises(CnnlabError, match="unknown binary_lr_scale"):
        parse_emulation({"weights": "binary", "binary_lr_scale": "he"})


def test_binary_activations_ste():
    from cnnlab.precision import sign_ste

    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1, -1, 1, 1, 1]
    y.backward(torch.ones_like(y))
    assert x.grad.tolist() == [0, 1, 1, 1, 0]


def test_nothing_to_binarize_is_one_clear_error():
    with pytest.raises(CnnlabError, match="nothing to binarize"):
        binarize(nn.Sequential(nn.Flatten(), nn.Dropout()))
    with pytest.raises(CnnlabError, match="nothing to binarize"):
        emulate(nn.Sequential(nn.Linear(2, 2)), parse_emulation({"activations": "binary"}))


def test_bad_emulate_tables_are_refused_before_any_data_is_read():
    with pytest.raises(CnnlabError, match="did you mean weights"):
        load_recipe(None, ["emulate.wieghts=fp16"])
    with pytest.raises(CnnlabError, match="unknown number format 'fp17'"):
        load_recipe(None, ["emulate.weights=fp17"])
    with pytest.raises(CnnlabError, match="master"):
        load_recipe(None, ["emulate.weights=binary", "emulate.master=false"])
    with pytest.raises(CnnlabError, match="do not mix"):
        load_recipe(None, ["emulate.weights=fp16", "precision=fp16"])
    with pytest.raises(CnnlabError, match="loss_scale"):
        load_recipe(None, ["emulate.loss_scale=sometimes"])


def test_dotted_overrides_merge_into_the_table():
    r = load_recipe(None, ["emulate.weights=fp16", "emulate.master=false", "emulate.loss_scale=1024"])
    assert r.emulate == {"weights": "fp16", "master": False, "loss_scale": 1024}
    assert parse_emulation(r.emulate).loss_scale == "static"


GUPTA = {part: "fixed<4,12>" for part in ("weights", "activations", "gradients", "update")}
EMULATED = {**TINY, "emulate": {**GUPTA, "rounding": "stochastic", "master": False}, "keep_last": 100}


def _weights(run) -> dict[str, torch.Tensor]:
    return load_weights(CheckpointDir(run / "checkpoints").latest().weights)[0]


def test_emulated_run_records_counters_and_resumes_bit_identically(tmp_path):
    torch.set_num_threads(1)
    recipe = load_recipe(None, **EMULATED)
    ref = tmp_path / "ref"
    assert train(recipe, out=ref, log=lambda s: None).status == "finished"
    import csv

    rows = list(csv.DictReader((ref / "metrics.csv").open()))
    assert all(int(r["updates_nonzero"]) > 0 and r["updates_lost"] != "" for r in rows)
    for v in _weights(ref).values():  # no masters: every stored conv/linear value is on the 2^-12 grid
        assert torch.equal(v, quantize(v, "fixed<4,12>")) or v.dim() <= 1

    # cut a copy back to its checkpoint at step 10 (mid-epoch 2), then resume it
    cut = tmp_path / "cut"
    shutil.copytree(ref, cut)
    for p in (cut / "checkpoints").iterdir():
        if p.name.startswith(("step-", "best")) and not p.name.startswith("step-00000009"):
            p.unlink()
    assert CheckpointDir(cut / "checkpoints").latest().step == 9
    assert train(recipe, resume=cut, log=lambda s: None).status == "finished"
    a, b = _weights(ref), _weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (cut / "metrics.csv").read_text().splitlines()[1:] != []
    ref_rows = [r.split(",")[11:] for r in (ref / "metrics.csv").read_text().splitlines()]
    cut_rows = [r.split(",")[11:] for r in (cut / "metrics.csv").read_text().splitlines()]
    assert ref_rows == cut_rows  # the counters too: the emulator's state (generator, counts) survived


def test_cli_bad_format_is_one_line_and_exit_2(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "lenet5", "--data", "shapes", "--set", "emulate.weights=fp17",
         "--out", str(tmp_path / "r")], capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "fp17" in p.stderr
