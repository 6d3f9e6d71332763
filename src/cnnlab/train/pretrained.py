"""Where pretrained weights come from: a cnnlab run or checkpoint, a state_dict file, or torchvision:NAME."""

from __future__ import annotations

import contextlib
import io
import socket
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.weights import StateDict, head_classes, load_into, load_state_dict, map_foreign_keys

# Weight files a run directory may hold, best first.
_RUN_WEIGHTS = (
    "best.safetensors",
    "last.safetensors",
    "checkpoints/best.safetensors",
    "checkpoints/last.safetensors",
)


def read_source(source: str) -> StateDict:
    """The state_dict named by `source` (a run directory, a weights file, or torchvision:NAME)."""
    if source.startswith("torchvision:"):
        return torchvision_state_dict(source.split(":", 1)[1])
    path = Path(source)
    if path.is_dir() or path.suffix == ".json":
        from cnnlab.train.checkpoint import resolve_weights

        with contextlib.suppress(CnnlabError):  # not a cnnlab run (checkpoints/ + manifests): look for files below
            return load_state_dict(resolve_weights(path))
    if path.is_dir():
        found = [path / rel for rel in _RUN_WEIGHTS if (path / rel).is_file()]
        if not found:
            found = sorted(path.glob("**/*.safetensors"))
        if not found:
            raise CnnlabError(f"{path}: no weights (.safetensors) found in this run directory")
        return load_state_dict(found[0])
    return load_state_dict(path)


def torchvision_state_dict(name: str, timeout_s: float = 20.0) -> StateDict:
    """torchvision's published (default) weights for `name`, downloaded and hash-checked by torchvision.

    Offline this fails with one line that says how to pass a file instead.
    """
    try:
        from torchvision import models as tvm
    except ImportError:
        raise CnnlabError("torchvision: sources need torchvision (pip install 'cnnlab[interop]')") from None
    published = sorted(tvm.list_models(module=tvm))
    if name not in published:
        raise UnknownNameError("torchvision model", name, published)
    weights = tvm.get_model_weights(name).DEFAULT
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # no internet must fail, not hang
    try:
        # torch.hub prints "Downloading: ..." (to stdout) even when it is about to fail offline.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return dict(weights.get_state_dict(progress=False, check_hash=True))
    except Exception as e:  # URLError, socket errors, hash mismatch: all mean "not available here"
        raise CnnlabError(
            f"cannot download torchvision:{name} ({type(e).__name__}); on a machine with internet, save "
            f"it with torch.save(torchvision.models.{name}(weights='DEFAULT').state_dict(), '{name}.pth') and pass "
            f"--weights {name}.pth"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def load_pretrained(model: nn.Module, family, state: StateDict, source: str) -> list[str]:
    """Load `state` into `model`; when the class counts differ, keep a fresh head. Returns what was done."""
    state = map_foreign_keys(family, state, model)
    target = model.num_classes
    notes = []
    n = head_classes(model, state)
    if n is not None:
        model.reset_head(n)  # load the pretrained head too, so that every other key is checked strictly
    load_into(model, state, source=source)
    if n is not None:
        with torch.random.fork_rng():
            model.reset_head(target)
        notes.append(f"head replaced: {n} -> {target} classes (reset_head)")
    notes.insert(0, f"loaded {len(state)} tensors from {source}")
    return notes
