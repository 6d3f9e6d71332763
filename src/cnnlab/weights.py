"""Reading weight files safely, and mapping torchvision / timm key layouts onto cnnlab's names.

Nothing here unpickles code: `.safetensors` files are read with safetensors, and `.pt`/`.pth` files with
`torch.load(weights_only=True)`, which refuses any pickle that would construct an arbitrary object.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.base import Family

StateDict = dict[str, torch.Tensor]

# Checkpoint containers people save: {"state_dict": ...}, {"model": ...}, cnnlab's own training state.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "weights", "ema")


def load_state_dict(path: str | Path) -> StateDict:
    """Read a state_dict from `.safetensors`, `.pt`, `.pth` or `.bin`, refusing anything that needs code."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise CnnlabError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
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


def load_into(model: nn.Module, state: StateDict, source: str = "weights") -> None:
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
    """Write a state_dict as safetensors atomically (temp file, fsync, rename)."""
    from safetensors.torch import save_file

    from cnnlab.fileio import atomic_path

    # safetensors refuses shared storage (tied weights); contiguous clones keep every name loadable.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
