"""`cnnlab export --onnx` and `cnnlab predict FILE.onnx`: onnxruntime against PyTorch, the metadata, bad input."""

from __future__ import annotations

import io
import json
import os
import sys

import pytest
import torch
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

import cnnlab  # noqa: E402
from cnnlab.cli import main  # noqa: E402
from cnnlab.data.shapes import generate  # noqa: E402
from cnnlab.export import RANDOM_WEIGHTS, Exportable, ExportFailed, batchnorm_from_noise, export_onnx  # noqa: E402
from cnnlab.export.onnx_file import opset_range  # noqa: E402
from cnnlab.train.evaluate import load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-epoch lenet5 run on 4 classes of the embedded shapes (class names are words, not digits)."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("CNNLAB_CACHE")
    os.environ["CNNLAB_CACHE"] = str(cache)
    run = tmp_path_factory.mktemp("export") / "run"
    argv = ["train", "lenet5", "--data", "shapes:train=192,test=32,classes=4", "--epochs", "1", "--out", str(run),
            "--no-progress", "--set", "batch_size=32", "--set", "plots=false"]  # fmt: skip
    try:
        assert main(argv) == 0
    finally:
        os.environ.pop("CNNLAB_CACHE", None) if old is None else os.environ.__setitem__("CNNLAB_CACHE", old)
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "lenet5.onnx"
    assert main(["export", str(run_dir), "--onnx", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    x, _ = generate(3, 32, split="test", seed=5, num_classes=4)
    d = tmp_path_factory.mktemp("images")
    paths = []
    for i, img in enumerate(x):
        paths.append(str(d / f"img{i}.png"))
        Image.fromarray(img.transpose(1, 2, 0)).save(paths[-1])
    return paths


def _props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_round_trip_metadata_and_logits(run_dir, exported):
    ck = load_checkpoint(run_dir)
    props = _props(exported)
    assert props["cnnlab.model"] == "lenet5" and props["cnnlab.version"] == cnnlab.__version__
    assert json.loads(props["cnnlab.input_size"]) == [ck.meta["in_chans"], 32, 32] == [3, 32, 32]  # shapes: RGB
    assert json.loads(props["cnnlab.mean"]) == pytest.approx(ck.meta["mean"])
    assert json.loads(props["cnnlab.std"]) == pytest.approx(ck.meta["std"])
    assert (
        json.loads(props["cnnlab.classes"])
        == ck.meta["classes"]
        == json.loads((run_dir / "run.json").read_text())["classes"]
    )
    assert props["cnnlab.exporter"].startswith(("dynamo", "torchscript"))
    # The oracle: the checkpoint's own model, on an input the export check did not see.
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(123))
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = ck.model(x).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_summary_line(run_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(run_dir), "--onnx", str(out), "--opset", "18"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{out}: ") and lines[0].endswith("PASS")
    assert "opset 18" in lines[0] and "vs PyTorch float64, onnxruntime is off by" in lines[0]
    assert "PyTorch float32 by" in lines[0] and "4x PyTorch float32's" in lines[0]
    assert [o.version for o in onnx.load(str(out)).opset_import if o.domain == ""] == [18]
    assert not [p for p in tmp_path.iterdir() if p.name != "m.onnx"]  # the atomic writer's temp file is gone


def test_predict_on_onnx_gives_the_run_top1(run_dir, exported, images, capsys):
    # Three images through a batch-1 file: the runtime module runs them one at a time.
    assert main(["predict", str(run_dir), *images, "-k", "2"]) == 0
    from_run = capsys.readouterr().out.strip().splitlines()
    assert main(["predict", str(exported), *images, "-k", "2"]) == 0
    from_onnx = capsys.readouterr().out.strip().splitlines()
    assert len(from_run) == len(from_onnx) == 3
    top1 = [line.split(": ", 1)[1].split(" ")[0] for line in from_run]
    assert top1 == [line.split(": ", 1)[1].split(" ")[0] for line in from_onnx]
    assert [line.split(": ")[0] for line in from_onnx] == images


def test_dynamic_batch(run_dir, tmp_path, capsys):
    out = tmp_path / "dyn.onnx"
    assert main(["export", str(run_dir), "--onnx", str(out), "--dynamic-batch"]) == 0
    assert "batch dynamic" in capsys.readouterr().out
    assert json.loads(_props(out)["cnnlab.dynamic_batch"]) is True
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert not isinstance(sess.get_inputs()[0].shape[0], int)  # a symbolic dimension
    model = load_checkpoint(run_dir).model
    for n in (1, 3, 7):
        x = torch.randn(n, 3, 32, 32)
        got = sess.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == (n, 4) and np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def _one_line_exit_2(capsys, argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err, err


def test_bad_export_input(run_dir, tmp_path, capsys):
    out = str(tmp_path / "x.onnx")
    lo, hi = opset_range()
    _one_line_exit_2(capsys, ["export", str(run_dir), "--onnx", out, "--opset", str(hi + 1)], f"use {lo}..{hi}")
    _one_line_exit_2(capsys, ["export", str(run_dir), "--onnx", out, "--opset", str(lo - 1)], f"use {lo}..{hi}")
    _one_line_exit_2(capsys, ["export", str(run_dir), "--onnx", out, "--input-size", "1x3xq"], "--input-size")
    _one_line_exit_2(capsys, ["export", str(run_dir), "--onnx", out, "--input-size", "1x32x32"], "3-channel")
    _one_line_exit_2(capsys, ["export", str(run_dir), "--onnx", out, "--input-size", "8x8"], "at least 32x32")
    _one_line_exit_2(capsys, ["export", "lenet", "--onnx", out], "did you mean lenet5")
    _one_line_exit_2(capsys, ["export", str(tmp_path / "nope"), "--onnx", out], "not found")
    _one_line_exit_2(capsys, ["export", "lenet5", "--onnx", str(tmp_path / "x.onx")], "must end in .onnx")
    # A zoo model at a size its fully connected layers do not take (found by the BatchNorm pass, before export).
    _one_line_exit_2(capsys, ["export", "lenet5", "--onnx", out, "--input-size", "1x64x64"], "cannot take a 1x64x64")
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where a directory is asked for: refused before the model is even built
    _one_line_exit_2(capsys, ["export", "lenet5", "--onnx", str(blocker / "x.onnx")], "cannot write there")
    assert not (tmp_path / "x.onnx").exists()


def test_missing_or_corrupt_checkpoint(run_dir, tmp_path, capsys):
    import shutil

    out = str(tmp_path / "x.onnx")
    weights = load_checkpoint(run_dir).path
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(weights.read_bytes()[:1000])
    _one_line_exit_2(capsys, ["export", str(truncated), "--onnx", out], "not a readable safetensors file")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    _one_line_exit_2(capsys, ["export", str(garbage), "--onnx", out], "not a readable safetensors file")
    # A run directory whose checkpoints are all damaged (the checksums fail) or gone.
    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    for f in (damaged / "checkpoints").glob("*.safetensors"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    _one_line_exit_2(capsys, ["export", str(damaged), "--onnx", out], "no usable checkpoint")
    shutil.rmtree(damaged / "checkpoints")
    _one_line_exit_2(capsys, ["export", str(damaged), "--onnx", out], "no usable checkpoint")


def test_bad_onnx_for_predict(exported, images, tmp_path, capsys):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(2048))
    _one_line_exit_2(capsys, ["predict", str(garbage), images[0]], "not a readable ONNX file")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.read_bytes()[:5000])
    _one_line_exit_2(capsys, ["predict", str(truncated), images[0]], str(truncated))
    (tmp_path / "empty.onnx").write_bytes(b"")
    _one_line_exit_2(capsys, ["predict", str(tmp_path / "empty.onnx"), images[0]], "not a readable ONNX file")
    foreign = onnx.load(str(exported))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    _one_line_exit_2(capsys, ["predict", str(tmp_path / "foreign.onnx"), images[0]], "no cnnlab metadata")
    _one_line_exit_2(capsys, ["predict", str(tmp_path / "absent.onnx"), images[0]], "not found")


def test_missing_onnxruntime_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    _one_line_exit_2(capsys, ["export", "lenet5", "--onnx", str(tmp_path / "x.onnx")], "pip install 'cnnlab[interop]'")


def test_a_failed_check_is_exit_1_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from cnnlab.export import onnx_file

    monkeypatch.setattr(
        onnx_file, "check", lambda data, model, inputs: onnx_file.Checked(0.5, 1e-4, False, 1e-6, "float64")
    )
    out = tmp_path / "x.onnx"
    assert main(["export", "lenet5", "--onnx", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exceeds the tolerance" in err, err
    assert not out.exists()


def test_export_reports_its_steps_and_a_terminal_bar_is_erased(monkeypatch, tmp_path, capsys):
    from cnnlab.train import progress

    seen: list[str] = []
    torch.manual_seed(0)
    src = Exportable(cnnlab.create_model("lenet5"), "lenet5", (1, 32, 32), [0.0], [1.0], [], RANDOM_WEIGHTS)
    export_onnx(src, opset=13, stage=seen.append)
    assert seen == ["torchscript exporter", "onnxruntime check"]  # opset 13 is TorchScript's alone

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Tty()
    monkeypatch.setattr(sys, "stderr", term)
    real = progress.Progress.__init__

    def no_delay(self, *args, **kwargs):  # noqa: ANN001, ANN202 - the bar at once, not after a second
        kwargs["delay"] = 0.0
        real(self, *args, **kwargs)

    monkeypatch.setattr(progress.Progress, "__init__", no_delay)
    assert main(["export", "lenet5", "--onnx", str(tmp_path / "l.onnx")]) == 0
    drawn = term.getvalue()
    assert "export lenet5: dynamo exporter" in drawn and "export lenet5: onnxruntime check" in drawn, drawn
    assert "\n" not in drawn  # erased, not left above the result line
    assert capsys.readouterr().out.startswith(str(tmp_path / "l.onnx"))


def _random(name: str, size: tuple[int, int, int]) -> tuple[torch.nn.Module, Exportable]:
    """A zoo model as `cnnlab export NAME` makes it: seed 0, BatchNorm statistics of noise."""
    torch.manual_seed(0)
    model = cnnlab.create_model(name)
    batchnorm_from_noise(model, size)
    return model, Exportable(model, name, size, [0.0] * size[0], [1.0] * size[0], [], RANDOM_WEIGHTS)


def test_the_check_measures_against_float64_and_catches_a_wrong_file():
    from cnnlab.export import onnx_file

    model, src = _random("resnet20", (3, 32, 32))
    e = export_onnx(src)
    assert e.reference == "float64" and 0 < e.torch_error < e.tolerance and e.max_diff <= e.tolerance
    x = [torch.randn(1, 3, 32, 32)]  # the file takes batch 1
    assert onnx_file.check(e.data, model, x).ok
    other = cnnlab.create_model("resnet20")  # another model's weights: the file is wrong for it
    batchnorm_from_noise(other, (3, 32, 32))
    bad = onnx_file.check(e.data, other, x)
    assert not bad.ok and bad.diff > 100 * bad.tolerance, (bad.diff, bad.tolerance)


def test_a_deep_plain_net_passes_within_a_few_times_pytorchs_own_float32_error():
    # 56 plain layers at random init amplify float32 rounding: PyTorch's own logits are further from float64
    # than RTOL, so a check against PyTorch float32 alone would fail every exporter (it did, before float64).
    from cnnlab.export import onnx_file

    _, src = _random("plain56", (3, 32, 32))
    e = export_onnx(src)
    assert e.torch_error > onnx_file.RTOL * 1.0  # the logits are < 1 here: RTOL's own tolerance is 1e-4
    assert e.tolerance > onnx_file.RTOL and e.max_diff <= e.tolerance  # PyTorch's own error set the tolerance
    assert e.tolerance <= onnx_file.TORCH_FACTOR * e.torch_error


def test_without_a_float64_twin_the_reference_is_pytorchs_float32(monkeypatch, tmp_path, capsys):
    from cnnlab.export import onnx_file

    monkeypatch.setattr(onnx_file, "float64_twin", lambda model: None)
    assert main(["export", "lenet5", "--onnx", str(tmp_path / "l.onnx")]) == 0
    line = capsys.readouterr().out
    assert "vs PyTorch float32 on 3 random inputs: max abs diff" in line and "PyTorch float64" not in line, line


# Small inputs where the model allows, so that the check is quick. Tracing costs the same at any input size, and even
# a mid-size network takes ~20 s (densenet121), so the default suite keeps a few small ones of different families
# (tests.conftest.is_heavy's parameter and input-size rule would leave dozens in it); the rest are `slow`.
def _small_size(name: str) -> tuple[int, int, int]:
    info = cnnlab.model_info(name)
    side = max(32, info.min_eval_input_size) if info.input_size[-1] > 32 else info.input_size[-1]
    return (info.input_size[0], side, side)


FAST = {"labnet", "lenet5", "mobilenet_v1_025", "resnet20", "shufflenet_v2_x0_5", "squeezenet1_1"}


# Models that cannot be checked, with why (the README lists them).
CANNOT: dict[str, str] = {}


def _zoo_param(name: str):  # noqa: ANN202 - a pytest ParameterSet
    marks = [] if name in FAST else [pytest.mark.slow]
    if name in CANNOT:
        marks.append(pytest.mark.xfail(raises=ExportFailed, reason=CANNOT[name], strict=True))
    return pytest.param(name, marks=marks)


@pytest.mark.parametrize("name", [_zoo_param(n) for n in cnnlab.list_models()])
def test_every_zoo_model_exports(name):
    size = _small_size(name)
    model, src = _random(name, size)
    with torch.no_grad():
        scale = float(model(torch.randn(1, *size)).abs().max())
    assert scale > 1e-3, f"logits ~{scale:.0e}: the check would compare nothing"
    e = export_onnx(src)  # ExportFailed says why in one line
    assert e.max_diff <= e.tolerance
    sess = ort.InferenceSession(e.data, providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].shape[-1] == model.num_classes


def test_an_exporter_failure_is_one_line_and_prints_no_graph(tmp_path, capfd):
    # The CIFAR ResNets' option-A shortcut (x[:, :, ::2, ::2]) is a strided slice, which TorchScript's opset 9
    # cannot write; torch then prints its whole IR graph to file descriptor 1 unless cnnlab silences it.
    out = tmp_path / "r.onnx"
    assert main(["export", "resnet20", "--onnx", str(out), "--opset", "9"]) == 1
    captured = capfd.readouterr()
    assert captured.out == "", captured.out[:500]
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "step!=1" in err and "Caused by" not in err, err
    assert "the default opset" in err and not out.exists()
    print("fd 1 is back")  # the descriptor is restored after the export
    assert capfd.readouterr().out == "fd 1 is back\n"
