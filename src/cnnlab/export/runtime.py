"""Running a cnnlab ONNX file with onnxruntime: its metadata read back, its session as a torch module.

`OrtModule` lets the PyTorch code paths (cnnlab.train.evaluate.predict_proba, its TTA views and batching) run
an ONNX file unchanged, so `cnnlab predict FILE.onnx` and `cnnlab predict RUN` share every line but the load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.export.onnx_file import INPUT, JSON_KEYS, OUTPUT, require


class OrtModule(nn.Module):
    """An onnxruntime session behind nn.Module's call: float (N, C, H, W) in, logits out.

    A file exported with a fixed batch is run in chunks of that batch (the last padded), so any N works.
    """

    def __init__(self, session: Any, name: str):
        super().__init__()
        self.session, self.name = session, name
        dim = session.get_inputs()[0].shape[0]
        self.fixed_batch = dim if isinstance(dim, int) and dim > 0 else None
        # predict_proba reads the device from the parameters; onnxruntime here runs on the CPU.
        self.register_parameter("_device", nn.Parameter(torch.empty(0), requires_grad=False))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        try:
            out = self.session.run([OUTPUT], {INPUT: x.detach().float().cpu().contiguous().numpy()})[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime's InvalidArgument, Fail, ... are not RuntimeErrors
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"onnxruntime: {msg}") from None  # predict_proba turns it into one line
        return torch.from_numpy(out.copy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.fixed_batch
        if b is None or len(x) == b:
            return self._run(x)
        outs = []
        for i in range(0, len(x), b):
            chunk = x[i : i + b]
            pad = b - len(chunk)
            if pad:
                chunk = torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])])
            outs.append(self._run(chunk)[: b - pad])
        return torch.cat(outs)


@dataclass
class OnnxModel:
    module: OrtModule
    meta: dict[str, Any]  # the checkpoint vocabulary: model, in_chans, image_size, mean, std, classes, ...
    path: Path


def read_metadata(proto: Any, path: Path) -> dict[str, Any]:
    """The `cnnlab.*` metadata_props as a checkpoint-style dict; CnnlabError when they are missing or wrong."""
    props = {p.key[len("cnnlab.") :]: p.value for p in proto.metadata_props if p.key.startswith("cnnlab.")}
    needed = ("model", "input_size", "mean", "std", "classes")
    if "model" not in props:
        raise CnnlabError(f"{path}: no cnnlab metadata in this ONNX file; was it written by cnnlab export?")
    missing = [k for k in needed if k not in props]
    if missing:
        raise CnnlabError(f"{path}: cnnlab metadata lacks {', '.join('cnnlab.' + k for k in missing)}")
    try:
        meta = {k: json.loads(v) if k in JSON_KEYS else v for k, v in props.items()}
    except json.JSONDecodeError as e:
        raise CnnlabError(f"{path}: unreadable cnnlab metadata ({e})") from None
    size = meta["input_size"]
    ok = isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)
    lists = all(isinstance(meta[k], list) for k in ("mean", "std", "classes"))
    if not ok or not lists or len(meta["mean"]) != size[0] or len(meta["std"]) != size[0]:
        raise CnnlabError(f"{path}: inconsistent cnnlab metadata (input_size {size}, mean {meta['mean']})")
    meta["in_chans"], meta["height"], meta["width"] = size
    meta["image_size"] = size[1]
    return meta


def load_onnx(path: str | Path) -> OnnxModel:
    """A cnnlab ONNX file ready to run; one-line CnnlabError for a missing, corrupt or foreign file."""
    require(dynamo=False)
    import onnx
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"ONNX file not found: {path}" if not path.exists() else f"{path}: not a file")
    data = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise CnnlabError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    if not proto.graph.node:  # protobuf parses many byte strings (even empty ones) as an empty model
        raise CnnlabError(f"{path}: not a readable ONNX file (no graph)")
    meta = read_metadata(proto, path)
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CnnlabError(f"{path}: onnxruntime cannot load it ({msg})") from None
    return OnnxModel(OrtModule(session, meta["model"]), meta, path)
