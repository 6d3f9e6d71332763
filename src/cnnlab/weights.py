"""Weights: the one reader of every weights source, the one loader into a model, and the torchvision / timm
key maps.

    read_weights(source) -> (state_dict, metadata)   any source (see its docstring)
    load_into(model, state, source, family=, head=)  map foreign keys, handle a different class count, load strictly

Nothing here unpickles code: `.safetensors` files are read with safetensors (by cnnlab.train.checkpoint's
load_weights, beside the writer of cnnlab's metadata), and `.pt`/`.pth` files with
`torch.load(weights_only=True)`, which refuses any pickle that would construct an arbitrary object.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models.base import Family

StateDict = dict[str, torch.Tensor]

# Checkpoint containers people save: {"state_dict": ...}, {"model": ...}, cnnlab's own training state.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "weights", "ema")

# Weight files a directory that is not a cnnlab checkpoint directory may hold, best first.
_RUN_WEIGHTS = (
    "best.safetensors",
    "last.safetensors",
    "checkpoints/best.safetensors",
    "checkpoints/last.safetensors",
)


def read_weights(source: str | Path) -> tuple[StateDict, dict[str, Any]]:
    """(state_dict, cnnlab metadata) of any weights source; the metadata is {} where the source carries none.

    A source is one of
      `torchvision:NAME`   torchvision's published weights (downloaded and hash-checked by torchvision)
      a run directory      its best, else its newest verified checkpoint (cnnlab.train.checkpoint.resolve_weights)
      a manifest `.json`   the checkpoint it commits, after checking its checksums
      another directory    its best/last .safetensors (also under checkpoints/), else the first one below it
      `.safetensors`       with or without cnnlab's metadata (the header key `cnnlab`, written by save_weights)
      `.pt`/`.pth`/`.bin`  a state_dict, bare or in a checkpoint dict ({"state_dict": ...}, {"model": ...}, ...)
    Keys are returned as stored: map_foreign_keys (or load_into with a family) maps torchvision / timm layouts.
    """
    if str(source).startswith("torchvision:"):
        return torchvision_state_dict(str(source).split(":", 1)[1]), {}
    path = Path(source)
    if path.is_dir() or path.suffix == ".json":
        from cnnlab.train.checkpoint import resolve_weights

        with contextlib.suppress(CnnlabError):  # not a cnnlab run (checkpoints/ + manifests): look for files below
            return _read_file(resolve_weights(path))
    if path.is_dir():
        found = [path / rel for rel in _RUN_WEIGHTS if (path / rel).is_file()]
        if not found:
            found = sorted(path.glob("**/*.safetensors"))
        if not found:
            raise CnnlabError(f"{path}: no weights (.safetensors) found in this run directory")
        return _read_file(found[0])
    return _read_file(path)


def load_state_dict(path: str | Path) -> StateDict:
    """The state_dict of a weights source (read_weights without the metadata)."""
    return read_weights(path)[0]


def _read_file(path: Path) -> tuple[StateDict, dict[str, Any]]:
    if not path.is_file():
        raise CnnlabError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        # The safetensors reader lives beside the writer of cnnlab's metadata (one way: checkpoint never
        # imports this module).
        from cnnlab.train.checkpoint import load_weights

        return load_weights(path)
    return _read_torch(path), {}


def _read_torch(path: Path) -> StateDict:
    try:
        with warnings.catch_warnings():
            # Files saved with pickle protocol 4+ (timm's, many others) load fine; torch warns about each anyway.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the pickle machinery raises many types; every one means "refused"
        msg = _first_line(e)
        if "weights_only" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
            raise CnnlabError(
                f"{path}: refused, the file needs unpickling code to load (only plain tensors are accepted; "
                "re-save it with torch.save(model.state_dict()) or as .safetensors)"
            ) from None
        raise CnnlabError(f"{path}: not a readable PyTorch file ({msg})") from None
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> StateDict:
    for _ in range(3):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _NESTED_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        break
    raise CnnlabError(f"{path}: holds no state_dict (expected a mapping of names to tensors)")


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


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _rename(state: StateDict, rules: tuple[tuple[str, str], ...]) -> StateDict:
    compiled = [(re.compile(p), r) for p, r in rules]
    out: StateDict = {}
    for key, value in state.items():
        new = key
        for pattern, repl in compiled:
            if pattern.search(key):
                new = pattern.sub(repl, key)
                break
        out[new] = value
    return out


def _strip_prefix(state: StateDict) -> StateDict:
    # DistributedDataParallel and torch.compile wrap the model; their prefixes are not part of the layout.
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def map_foreign_keys(family: Family, state: StateDict, model: nn.Module | None = None) -> StateDict:
    """Rename a torchvision or timm state_dict into cnnlab's layout; cnnlab's own keys pass through.

    With a model, the candidate layout that matches most of the model's keys wins; without one, a state whose
    keys already start with stem./stages./head. is taken as cnnlab's.
    """
    state = _strip_prefix(state)
    candidates = [state]
    for rules in (family.torchvision_keys, family.timm_keys):
        if callable(rules):  # rules that depend on the variant (VGG, SqueezeNet): derived from the built model
            rules = rules(model) if model is not None else ()
        if rules:
            candidates.append(_rename(state, rules))
    if model is None:
        if any(k.split(".")[0] in ("stem", "stages", "head") for k in state):
            return state
        return candidates[1] if len(candidates) > 1 else state
    wanted = set(model.state_dict())
    return max(candidates, key=lambda c: len(wanted & set(c)))


HeadPolicy = Literal["strict", "adopt", "replace"]


def load_into(
    model: nn.Module,
    state: StateDict,
    source: str = "weights",
    *,
    family: Family | None = None,
    head: HeadPolicy = "strict",
) -> list[str]:
    """Load `state` into `model`, every key checked strictly; returns what was done, one line per note.

    With `family`, torchvision / timm keys are first mapped onto cnnlab's (map_foreign_keys). `head` says what a
    state whose classifier was trained for another class count does:
      strict   fails, naming the shape mismatch
      adopt    the model's head is rebuilt for the state's class count and loaded (create_model(weights=))
      replace  the state's head is loaded (so its keys are checked too), then a fresh head for the model's own
               class count replaces it (fine-tuning; the fresh head does not move the global RNG)
    """
    if head not in ("strict", "adopt", "replace"):
        raise ValueError(f"head must be strict, adopt or replace, got {head!r}")
    if family is not None:
        state = map_foreign_keys(family, state, model)
    n = head_classes(model, state) if head != "strict" else None
    target = model.num_classes if n is not None else None
    if n is not None:
        model.reset_head(n)
    _load_strict(model, state, source)
    notes = [f"loaded {len(state)} tensors from {source}"]
    if n is not None and head == "replace":
        with torch.random.fork_rng():
            model.reset_head(target)
        notes.append(f"head replaced: {n} -> {target} classes (reset_head)")
    return notes


def _load_strict(model: nn.Module, state: StateDict, source: str) -> None:
    """Load `state` into `model` strictly; a mismatch names the first differing keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        name = getattr(model, "model_name", "") or type(model).__name__
        parts = []
        if wrong_shape:
            parts.append(
                "shape mismatch "
                + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape[:3])
            )
        if missing:
            parts.append(f"{len(missing)} missing, e.g. " + ", ".join(missing[:3]))
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. " + ", ".join(unexpected[:3]))
        raise CnnlabError(f"{source} does not fit {name}: " + "; ".join(parts))
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(state[k].to(dtype=t.dtype))


def head_classes(model: nn.Module, state: StateDict) -> int | None:
    """The class count a state_dict's head was trained for, if it differs from the model's; else None."""
    head = getattr(model, "head", None)
    fc = getattr(head, "fc", None)
    if fc is None:
        return None
    key = next((k for k, v in model.named_parameters() if v is fc.weight), None)
    if key is None or key not in state:
        return None
    n = int(state[key].shape[0])
    return n if n != head.num_classes else None


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write a state_dict as safetensors atomically (temp file, fsync, rename): checkpoint.save_weights, the one
    safetensors writer (it refuses non-finite weights and copies shared storages apart)."""
    from cnnlab.train.checkpoint import save_weights

    save_weights(path, dict(state))
