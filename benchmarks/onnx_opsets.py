"""Which zoo models export to which ONNX opsets: a survey, not a speed benchmark.

Every zoo model (random weights, torch.manual_seed(0), BatchNorm statistics of N(0,1) noise, at its own input size,
as `cnnlab export MODEL` makes it) goes through cnnlab.export.export_onnx at each opset asked for, and passes only
if onnxruntime's logits are then within the check's tolerance of PyTorch's in float64 (`max_diff`; `torch_error` is
PyTorch float32's own distance from float64). The tests use small inputs instead, where
some old-opset symbolics fail that work at the real size (AlexNet's adaptive pooling to 6x6 from 1x1). Opsets below
18 go through the TorchScript exporter (dynamo writes 18 and above), so the survey says where that fallback stops
working. The README's list of what cannot export comes from this file.

    python benchmarks/onnx_opsets.py [--opsets 9,11,13,17,20] [--models resnet20,vgg11]

Results: benchmarks/results/onnx_opsets-<cpu tag>.csv, rewritten after every model, so a killed run continues
where it stopped (rows already there are kept and not run again). The clock (`seconds`) includes tracing, the
ONNX conversion and the onnxruntime check.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import torch
from _machine import cpu_line, result_path, write_csv

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.export import RANDOM_WEIGHTS, Exportable, ExportFailed, batchnorm_from_noise, export_onnx


def own_size(name: str) -> tuple[int, int, int]:
    return tuple(cnnlab.model_info(name).input_size)  # type: ignore[return-value]


def survey_one(name: str, opset: int) -> dict[str, object]:
    torch.manual_seed(0)
    model = cnnlab.create_model(name)
    size = own_size(name)
    batchnorm_from_noise(model, size)  # as `cnnlab export MODEL` does: logits that are not ~0
    src = Exportable(model, name, size, [0.0] * size[0], [1.0] * size[0], [], RANDOM_WEIGHTS)
    t0 = time.perf_counter()
    row: dict[str, object] = {"model": name, "opset": opset, "input": "x".join(map(str, size))}
    try:
        e = export_onnx(src, opset=opset)
        own = "" if e.torch_error is None else f"{e.torch_error:.2e}"
        row.update(result="pass", exporter=e.exporter, max_diff=f"{e.max_diff:.2e}", torch_error=own,
                   tolerance=f"{e.tolerance:.2e}")  # fmt: skip
    except (ExportFailed, CnnlabError) as err:
        reason = str(err).split(": ", 1)[-1]  # drop "NAME did not export to ONNX opset N"
        row.update(result="fail", reason=reason.split(" (the default opset")[0])
    row["seconds"] = f"{time.perf_counter() - t0:.1f}"
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--opsets", default="9,11,13,17,20")
    p.add_argument("--models", default=None, help="comma-separated zoo names (default: the whole zoo)")
    args = p.parse_args(argv)
    opsets = [int(v) for v in args.opsets.split(",")]
    names = args.models.split(",") if args.models else cnnlab.list_models()
    print(cpu_line(), f"torch {torch.__version__}", flush=True)
    path = result_path("onnx_opsets")
    rows: list[dict[str, object]] = []
    if path.exists():
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    done = {(r["model"], int(r["opset"])) for r in rows}
    torch.set_num_threads(1)
    for name in names:
        todo = [o for o in opsets if (name, o) not in done]
        for opset in todo:
            row = survey_one(name, opset)
            rows.append(row)
            print(f"{name} opset {opset}: {row['result']} {row.get('reason', '')} ({row['seconds']} s)", flush=True)
        if todo:
            write_csv(path, rows)
    for opset in opsets:
        ok = [r for r in rows if int(r["opset"]) == opset and r["result"] == "pass"]
        n = sum(1 for r in rows if int(r["opset"]) == opset)
        print(f"opset {opset}: {len(ok)} of {n} pass")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
