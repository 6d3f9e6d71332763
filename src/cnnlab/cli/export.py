"""`cnnlab export RUN_DIR|CHECKPOINT|MODEL --onnx OUT.onnx [--opset N] [--dynamic-batch] [--input-size CxHxW]`.

The file is written only after onnxruntime has run it to PyTorch's logits on random inputs; a file that does not
match is not written and the exit code is 1 (bad input stays exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError

HELP = "write a model as an ONNX file (self-describing metadata), checked against PyTorch by onnxruntime"
EPILOG = (
    "The ONNX input is the normalized float batch (N, C, H, W); the file's metadata_props (cnnlab.mean, "
    "cnnlab.std, cnnlab.input_size, cnnlab.classes, ...) say how to make it from an image, and `cnnlab predict "
    "OUT.onnx IMAGE` reads them. A zoo MODEL is exported with random weights, BatchNorm statistics of one batch "
    "of N(0,1) noise (so the check compares logits that are not ~0), and mean 0, std 1 (no training data to "
    "take them from). Exit code 1: the exported file did not match PyTorch (nothing is written)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT|MODEL", help="a run directory, a checkpoint or a zoo name")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch.onnx's, 20 in torch 2.14)")
    p.add_argument("--dynamic-batch", action="store_true", help="leave the batch dimension free (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")
    p.add_argument(
        "--input-size", default=None, metavar="CxHxW", help="CxHxW, HxW or S (default: the run's or the model's)"
    )


def _input_size(text: str | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if text is None:
        return default
    from cnnlab.cli.analyze import parse_input

    try:
        size = parse_input(text, default[0])
    except CnnlabError as e:  # one parser of CxHxW for every command; its message names analyze's flag
        raise CnnlabError(str(e).replace("--input:", "--input-size:", 1)) from None
    if size[0] != default[0]:
        raise CnnlabError(f"--input-size {text}: this model takes {default[0]}-channel input, not {size[0]}")
    return size  # type: ignore[return-value]


def _check_writable(out: Path) -> None:
    """Fail before a long export, not after it, when the file cannot be written where asked."""
    import tempfile

    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # as the atomic writer does
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
    except OSError as e:
        raise CnnlabError(f"--onnx {out}: cannot write there ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def _looks_like_path(source: str) -> bool:
    return Path(source).exists() or "/" in source or Path(source).suffix in (".safetensors", ".json", ".pt")


def load_source(source: str, input_size: str | None):  # noqa: ANN201 - cnnlab.export.Exportable
    """A run, checkpoint or zoo name as an Exportable: a run's normalization and classes, a zoo model's defaults."""
    import torch

    import cnnlab
    from cnnlab.export import RANDOM_WEIGHTS, Exportable, batchnorm_from_noise

    if _looks_like_path(source):
        from cnnlab.train.evaluate import load_checkpoint

        ck = load_checkpoint(source)  # one-line CnnlabError for a missing, corrupt or foreign file
        m = ck.meta
        c, s = int(m["in_chans"]), int(m["image_size"])
        size = _input_size(input_size, (c, s, s))
        classes = m.get("classes") or [str(i) for i in range(int(m["num_classes"]))]
        return Exportable(ck.model, m["model"], size, list(m["mean"]), list(m["std"]), classes, str(ck.path))
    info = cnnlab.model_info(source)  # an unknown name: UnknownNameError with the close ones
    size = _input_size(input_size, tuple(info.input_size))
    torch.manual_seed(0)  # random init, but the same file on every run
    model = cnnlab.create_model(source)
    try:
        batchnorm_from_noise(model, size)  # so that the onnxruntime check compares logits that are not ~0
    except (RuntimeError, ValueError) as e:  # the first forward pass: an input size the model cannot take
        c, h, w = size
        raise CnnlabError(f"{source} cannot take a {c}x{h}x{w} input: {str(e).splitlines()[0]}") from None
    c, n = size[0], int(model.num_classes)
    # No training data, so no normalization to record: mean 0, std 1 feeds the model x / 255.
    return Exportable(model, source, size, [0.0] * c, [1.0] * c, [str(i) for i in range(n)], RANDOM_WEIGHTS)


def run(args: argparse.Namespace) -> int:
    from cnnlab.data.cache import human_bytes
    from cnnlab.export import ExportFailed, export_onnx, write
    from cnnlab.export.onnx_file import RTOL, TORCH_FACTOR, default_opset, exporters_for, require
    from cnnlab.train.progress import Progress

    out = Path(args.onnx)
    if out.suffix.lower() != ".onnx":
        raise CnnlabError(f"--onnx {args.onnx}: the file name must end in .onnx (predict tells files by it)")
    if out.is_dir():
        raise CnnlabError(f"--onnx {args.onnx}: is a directory")
    _check_writable(out)
    if args.opset is not None:
        exporters_for(args.opset)  # an unsupported opset fails before a model is loaded
    require()
    src = load_source(args.source, args.input_size)
    order = exporters_for(args.opset if args.opset is not None else default_opset())
    # A terminal's bar over the steps (each exporter's conversion and check), shown once a step takes a second;
    # a log gets only the result line below.
    label = f"export {src.name}"
    with Progress(2 * len(order), label, summary=False, delay=1.0) as bar:

        def stage(what: str) -> None:  # one redraw: the step before done (none before the first), the next named
            bar.update(0, steps=0 if bar.desc == label else 1, desc=f"{label}: {what}", force=True)

        try:
            e = export_onnx(src, opset=args.opset, dynamic=args.dynamic_batch, stage=stage)
        except ExportFailed as err:
            bar.close(clear=True)
            sys.stderr.write(f"cnnlab export: failed: {err}\n")
            return 1
        bar.close(clear=True)
    write(out, e)
    for note in e.notes:  # an exporter passed over for the one that worked
        sys.stderr.write(f"cnnlab export: note: {note}\n")
    c, h, w = src.input_size
    batch = "batch dynamic (checked at " + "/".join(map(str, e.batches)) + ")" if args.dynamic_batch else "batch 1"
    head = f"{out}: {human_bytes(len(e.data))}, opset {e.opset}, {e.exporter} exporter, input {c}x{h}x{w}, {batch}; "
    n = len(e.batches)
    rtol = f"{RTOL:.0e}".replace("e-0", "e-")  # 1e-4
    if e.torch_error is None:  # no float64 twin of the model: PyTorch's float32 logits are the reference
        print(head + f"vs PyTorch float32 on {n} random inputs: max abs diff {e.max_diff:.1e} <= {e.tolerance:.1e} "
              f"({rtol} x max(1, max|logit|)): PASS")  # fmt: skip
    else:
        print(head + f"on {n} random inputs vs PyTorch float64, onnxruntime is off by {e.max_diff:.1e}, PyTorch "
              f"float32 by {e.torch_error:.1e}; tolerance {e.tolerance:.1e} (the larger of {rtol} x max(1, "
              f"max|logit|) and {TORCH_FACTOR:g}x PyTorch float32's): PASS")  # fmt: skip
    return 0
