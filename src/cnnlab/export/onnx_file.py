"""A model as a self-describing ONNX file, checked against PyTorch by onnxruntime before it is written.

The file's input is the normalized float batch the PyTorch model takes, (N, C, H, W) named `input`; its output is
the logits (N, classes) named `logits`. How to get from an image to `input` (mean, std, size, channels) and what
the outputs mean (class names) are in the model's `metadata_props` under `cnnlab.*` keys (META_KEYS), so the file
alone is enough to classify an image (`cnnlab predict FILE.onnx IMAGE`).

Exporter: torch's dynamo exporter (torch.export + onnxscript's torchlib) first, the TorchScript exporter second.
dynamo is the one torch maintains (TorchScript export is deprecated since torch 2.9); on torch 2.14 it exports
every zoo model within the tolerance, and where both were tried on the zoo the two files agreed with PyTorch
equally well (dynamo's tracing is slower: ~3 s for a CIFAR ResNet, ~30 s for a DenseNet). The TorchScript
exporter is the fallback for the opsets below torchlib's (dynamo reaches them only through onnx's version
converter, which torch warns "may not be successful" and then keeps opset 18: a file of another opset than asked)
and for a model dynamo cannot trace. The first exporter whose file passes the onnxruntime check wins; the
metadata (`cnnlab.exporter`) and the summary line say which one it was.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError

INSTALL = "pip install 'cnnlab[interop]'"
INPUT, OUTPUT = "input", "logits"
EXPORTERS = ("dynamo", "torchscript")
# The check measures both float32 runs, onnxruntime's and PyTorch's, against PyTorch in float64 (the exact answer,
# to float32's eyes), and passes the file when its error is at most RTOL * max(1, max |logit|) or TORCH_FACTOR
# times PyTorch's own float32 error, whichever is larger. Why not simply |onnx - torch| <= RTOL: float32 kernels
# that sum in another order differ by a few ulps, and a deep network amplifies them. Measured at each model's own
# input size (random weights, BatchNorm statistics of noise; benchmarks/onnx_opsets.py): resnet152's PyTorch
# float32 logits are 6.6e-4 from float64 and onnxruntime's 6.8e-4; plain110's 3.9e-2 and 5.8e-2 (logits ~0.2: 110
# plain layers are ill-conditioned in any float32 engine). In the survey's 70 files where 4x PyTorch's error set
# the tolerance (ResNet-101/152, ResNeXt-101, WRN-101, Inception-v3/v4, plain-34 to 110) onnxruntime's error was
# 0.76-1.8x PyTorch's, so 4x is a rounding difference with room; where both are far below RTOL, RTOL decides
# (EfficientNet-B7: 1.6e-5 vs 1.1e-6). An export bug is off by the size of the logits (a file of other weights:
# >100x the tolerance, tests/export).
RTOL = 1e-4
TORCH_FACTOR = 4.0
META_KEYS = ("model", "version", "input_size", "mean", "std", "classes", "weights", "exporter", "dynamic_batch")
JSON_KEYS = ("input_size", "mean", "std", "classes", "dynamic_batch")  # the rest are plain strings


class ExportFailed(Exception):
    """The exporters could not write a file that matches PyTorch: not bad input (exit 1, not 2)."""


def require(dynamo: bool = True) -> None:
    """One line naming the extra to install when onnx, onnxruntime (or onnxscript, dynamo's backend) is missing."""
    for module in ("onnx", "onnxruntime", *(("onnxscript",) if dynamo else ())):
        try:
            importlib.import_module(module)
        except ImportError:
            raise CnnlabError(f"ONNX needs {module}, which is not installed: {INSTALL}") from None


def opset_range() -> tuple[int, int]:
    """The opsets the installed torch.onnx writes (torch.onnx's own constants: 7..23 for torch 2.14)."""
    from torch.onnx import _constants as c

    return c.ONNX_MIN_OPSET, c.ONNX_MAX_OPSET


def default_opset() -> int:
    from torch.onnx import _constants as c

    return c.ONNX_DEFAULT_OPSET


def exporters_for(opset: int) -> list[str]:
    """The exporters to try, in order, for an opset; CnnlabError when none writes it."""
    from torch.onnx import _constants as c

    try:  # the opset torchlib is written in; below it, dynamo converts down (see the module docstring)
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET
    except ImportError:  # an older torch: dynamo's torchlib has been at 18 since it appeared
        TORCHLIB_OPSET = 18
    lo, hi = opset_range()
    if not lo <= opset <= hi:
        raise CnnlabError(f"--opset {opset} is not supported by torch {torch.__version__}'s exporter: use {lo}..{hi}")
    order = ["dynamo"] if opset >= TORCHLIB_OPSET else []
    return order + (["torchscript"] if opset <= c.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET else [])


@dataclass(frozen=True)
class Exportable:
    """A model in eval mode and what a user of its ONNX file needs to know to feed it."""

    model: nn.Module
    name: str
    input_size: tuple[int, int, int]  # C, H, W
    mean: list[float]
    std: list[float]
    classes: list[str]
    weights: str  # where the weights came from: a checkpoint path, or "random init"


@dataclass
class Exported:
    data: bytes  # the serialized ModelProto, metadata included
    exporter: str
    opset: int
    max_diff: float  # max |onnx - reference| of the worst input (reference: PyTorch in float64, see RTOL; Checked)
    tolerance: float  # that input's tolerance
    batches: tuple[int, ...]  # the batch sizes checked
    notes: list[str] = field(default_factory=list)  # why an earlier exporter was passed over
    torch_error: float | None = None  # max |PyTorch float32 - float64|: the model's own rounding error
    reference: str = "float64"  # what max_diff is measured against: "float64", or "float32" (no float64 twin)


@dataclass
class Checked:
    """The figures of the input where diff/tolerance was largest (NaN first), so `diff <= tolerance` reads true of
    one input when the file passes."""

    diff: float  # max |onnx - reference| (NaN if onnxruntime gave NaN)
    tolerance: float
    ok: bool  # every input within its tolerance
    torch_error: float | None  # max |PyTorch float32 - float64|; None without a float64 twin
    reference: str


RANDOM_WEIGHTS = "random init, BatchNorm statistics of N(0,1) noise"


@torch.no_grad()
def batchnorm_from_noise(model: nn.Module, input_size: tuple[int, int, int], batch: int = 8, seed: int = 0) -> int:
    """Every BatchNorm's running mean and variance set to its batch statistics on one batch of N(0,1) noise; the
    model is left in eval mode. Returns how many BatchNorm layers there are.

    Why: a random-init model's running statistics (mean 0, var 1) do not match its activations, so in eval mode
    they shrink or grow layer by layer: EfficientNet-B0's logits are ~1e-14 and MobileNet-v1's ~1e-19 on a random
    input, where any file, even an all-zero one, is within the check's tolerance; resnet1202's overflow to NaN.
    With the statistics of one batch every zoo model's logits are between 1e-2 and 1e7, so the check compares
    something. Only the other layers' modes are kept (eval): auxiliary heads and dropout do not run.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, exactly that batch's statistics
        m.train()
    g = torch.Generator().manual_seed(seed)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model(torch.randn(batch, *input_size, generator=g).to(device))
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
        m.eval()
    return len(bns)


def one_line(e: BaseException) -> str:
    """An exporter's error (often pages of graph dumps) as its first meaningful line, without the IR value it
    names ("step!=1 is currently not supported  [Caused by the value '148 defined in (%148 : Float(...) ...")."""
    for line in str(e).splitlines():
        line = line.split("[Caused by")[0].strip().lstrip("#").strip()
        if line:
            return f"{type(e).__name__}: {line}"[:300]
    return type(e).__name__


@contextlib.contextmanager
def _stdout_fd_silenced() -> Iterator[None]:
    """File descriptor 1 to /dev/null for the block: C++ writes there, below sys.stdout.

    Why: torch's TorchScript exporter prints its whole IR graph (hundreds of lines) to stdout when a symbolic fails,
    even with verbose=False, because its setup_onnx_logging tests the function `_jit_is_onnx_log_enabled` rather
    than its result (torch 2.14), so the log is always on. The failure itself still reaches the caller as the
    exception.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (a daemon): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _dynamo(model: nn.Module, x: torch.Tensor, opset: int, dynamic: bool):  # noqa: ANN202 - onnx.ModelProto
    kw = {"dynamic_shapes": ({0: torch.export.Dim("batch", min=1)},)} if dynamic else {}
    program = torch.onnx.export(
        model, (x,), dynamo=True, opset_version=opset, input_names=[INPUT], output_names=[OUTPUT],
        external_data=False, verbose=False, **kw,
    )  # fmt: skip
    return program.model_proto


def _torchscript(model: nn.Module, x: torch.Tensor, opset: int, dynamic: bool):  # noqa: ANN202 - onnx.ModelProto
    import onnx

    buf = io.BytesIO()
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        # Its DeprecationWarning (chosen knowingly, as the fallback) and TracerWarnings (the input-size check
        # becomes a constant, right for a file of one input size): the onnxruntime check judges the result.
        warnings.simplefilter("ignore")
        with _stdout_fd_silenced():
            torch.onnx.export(
                model, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT], output_names=[OUTPUT],
                dynamic_axes=axes,
            )  # fmt: skip
    return onnx.load_model_from_string(buf.getvalue())


def metadata(src: Exportable, exporter: str, dynamic: bool) -> dict[str, str]:
    """The `cnnlab.*` metadata_props: strings as they are, lists as JSON (class names survive any character)."""
    import cnnlab

    values = {
        "model": src.name,
        "version": cnnlab.__version__,
        "input_size": list(src.input_size),
        "mean": [float(v) for v in src.mean],
        "std": [float(v) for v in src.std],
        "classes": list(src.classes),
        "weights": src.weights,
        "exporter": f"{exporter} (torch {torch.__version__})",
        "dynamic_batch": dynamic,
    }
    out = {f"cnnlab.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    out["cnnlab.preprocess"] = (
        "8-bit RGB (L when input_size[0] == 1), shorter side resized to input_size[1] (bilinear), centre crop, "
        "x / 255, then (x - mean) / std per channel, as NCHW float32"
    )
    return out


def _with_metadata(proto, props: dict[str, str]) -> bytes:  # noqa: ANN001 - onnx.ModelProto
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for k, v in [*keep, *props.items()]:
        proto.metadata_props.add(key=k, value=v)
    return proto.SerializeToString()


def float64_twin(model: nn.Module) -> nn.Module | None:
    """A float64 copy of the model on the CPU (the check's exact reference); None when it cannot be made or run."""
    import copy

    try:
        return copy.deepcopy(model).to("cpu", torch.float64).eval()
    except (RuntimeError, TypeError, ValueError, NotImplementedError):  # a module that cannot be copied or cast
        return None


@torch.no_grad()
def check(data: bytes, model: nn.Module, inputs: list[torch.Tensor]) -> Checked:
    """onnxruntime's logits against PyTorch's on each input, both measured against float64 (see RTOL)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    twin = float64_twin(model)
    worst = Checked(0.0, RTOL, True, None, "float64")
    worst_ratio, ok = -1.0, True
    for x in inputs:
        ref32 = model(x).float()
        got = torch.from_numpy(np.asarray(sess.run([OUTPUT], {INPUT: x.cpu().numpy()})[0]))
        if got.shape != ref32.shape:
            raise ExportFailed(f"onnxruntime gave logits of shape {tuple(got.shape)}, torch {tuple(ref32.shape)}")
        exact = None
        if twin is not None:
            try:
                exact = twin(x.cpu().double())
            except (RuntimeError, NotImplementedError):  # an op without a float64 kernel
                twin = None
        own: float | None = None
        if exact is None:  # PyTorch's float32 is the reference; the tolerance is RTOL's alone
            diff = float((got - ref32.cpu()).abs().max())
            tol = RTOL * max(1.0, float(ref32.abs().max()))
        else:
            own = float((ref32.cpu().double() - exact).abs().max())
            diff = float((got.double() - exact).abs().max())
            tol = max(RTOL * max(1.0, float(exact.abs().max())), TORCH_FACTOR * own)
        ok = ok and diff <= tol  # NaN fails too
        if diff != diff or (worst.diff == worst.diff and diff / tol > worst_ratio):
            worst_ratio = diff / tol
            worst = Checked(diff, tol, True, own, "float32" if exact is None else "float64")
    worst.ok = ok
    return worst


def export_onnx(
    src: Exportable,
    opset: int | None = None,
    dynamic: bool = False,
    seed: int = 0,
    exporters: tuple[str, ...] | None = None,
    stage: Callable[[str], None] | None = None,
) -> Exported:
    """The model as ONNX bytes that onnxruntime runs to PyTorch's logits on random inputs (ExportFailed if no
    exporter manages it; CnnlabError for bad input). With `dynamic`, the batch dimension is free and inputs of
    other batch sizes are checked too. `exporters` narrows the order tried (a comparison of the two).

    `stage(what)` is called as each step starts: an exporter's conversion, then its onnxruntime check (two per
    exporter tried; tracing EfficientNet-B7 takes tens of seconds, a progress bar says where it is)."""
    stage = stage or (lambda what: None)
    opset = default_opset() if opset is None else opset
    order = [e for e in exporters_for(opset) if exporters is None or e in exporters]
    if not order:
        raise CnnlabError(f"none of the exporters {', '.join(exporters or ())} writes opset {opset}")
    require(dynamo="dynamo" in order)
    model = src.model.eval()
    c, h, w = src.input_size
    g = torch.Generator().manual_seed(seed)
    # dynamo specializes a batch dimension traced at size 1, so a free batch is traced at 2; 1 and 5 are checked.
    batches = (2, 1, 5) if dynamic else (1, 1, 1)
    inputs = [torch.randn(b, c, h, w, generator=g) for b in batches]
    try:
        with torch.no_grad():
            out = model(inputs[0])
    except (RuntimeError, ValueError) as e:
        raise CnnlabError(f"{src.name} cannot take a {c}x{h}x{w} input: {str(e).splitlines()[0]}") from None
    if not isinstance(out, torch.Tensor):
        raise ExportFailed(f"{src.name}: the eval-mode forward returns {type(out).__name__}, not a logits tensor")
    if not bool(torch.isfinite(out).all()):  # nothing to check a file against
        raise ExportFailed(f"{src.name}: PyTorch's own logits are NaN or infinite on a random input ({src.weights})")
    notes: list[str] = []
    for exporter in order:
        fn = _dynamo if exporter == "dynamo" else _torchscript
        stage(f"{exporter} exporter")
        try:
            proto = fn(model, inputs[0], opset, dynamic)
            data = _with_metadata(proto, metadata(src, exporter, dynamic))
        except Exception as e:  # noqa: BLE001 - exporters raise anything from torch.export, onnxscript, jit
            notes.append(f"{exporter}: {one_line(e)}")
            continue
        stage("onnxruntime check")
        try:
            result = check(data, model, inputs)
        except ExportFailed as e:
            notes.append(f"{exporter}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - onnxruntime refusing the file (an op or opset it lacks)
            notes.append(f"{exporter}: onnxruntime cannot run the file ({one_line(e)})")
            continue
        if result.ok:
            return Exported(data, exporter, opset, result.diff, result.tolerance, batches, notes, result.torch_error,
                            result.reference)  # fmt: skip
        notes.append(
            f"{exporter}: max abs diff {result.diff:.2e} from PyTorch {result.reference} exceeds the tolerance "
            f"{result.tolerance:.2e}" + (f" (PyTorch float32's own: {result.torch_error:.2e})"
                                         if result.torch_error is not None else "")
        )  # fmt: skip
    hint = f" (the default opset {default_opset()} may work)" if opset < default_opset() else ""
    raise ExportFailed(f"{src.name} did not export to ONNX opset {opset}: " + "; ".join(notes) + hint)


def write(path: str | Path, exported: Exported) -> Path:
    """The file, atomically: a kill leaves the old file or the new one."""
    from cnnlab.fileio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(exported.data)
    return path
