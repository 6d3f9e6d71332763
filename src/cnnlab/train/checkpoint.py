"""Checkpoints that survive a kill at any moment.

A checkpoint is three files in `RUN/checkpoints/`:

    step-00001234.safetensors   the model's weights (+ a JSON description of the model in the metadata)
    step-00001234.state.pt      the training state: plain tensors/numbers only, so torch.load(weights_only=True)
    step-00001234.json          the manifest: sha256 and size of both files; written LAST, it commits the checkpoint

Each file is written atomically (temp file, fsync, rename, fsync of the directory). A kill before the manifest
leaves an uncommitted checkpoint that is ignored; a file damaged later fails its checksum and the newest
checkpoint that verifies is used instead. The best checkpoint (by validation accuracy) is the same three-file
scheme under the name `best-<step>` with `best.json` pointing at it, so replacing it is atomic too.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_path, write_json

FORMAT = 1
_STEP_RE = re.compile(r"^step-(\d+)\.json$")


class NonFiniteWeightsError(CnnlabError):
    """Raised instead of writing weights that contain NaN or infinity."""


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_finite(state: dict[str, torch.Tensor], what: str = "weights") -> None:
    for k, v in state.items():
        if v.dtype.is_floating_point and not bool(torch.isfinite(v).all()):
            raise NonFiniteWeightsError(f"refusing to write non-finite {what}: tensor '{k}' has NaN or inf")


def weights_bytes(state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> bytes:
    """Serialize weights to safetensors; `meta` (JSON-able) goes in the header under the key `cnnlab`."""
    check_finite(state)
    # Copies detach tied/shared storages, which safetensors refuses to save.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    return st_save(tensors, metadata={"cnnlab": json.dumps(meta or {})})


def save_weights(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    _write_bytes(Path(path), weights_bytes(state, meta))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, cnnlab metadata) of a safetensors file, written by save_weights or not (metadata {}).

    The one safetensors reader, beside the writer of its metadata; cnnlab.weights.read_weights reads every
    weights source (run directories, .pt/.pth, torchvision:NAME) and calls this for .safetensors.
    """
    try:
        # One read of the bytes, not a memory map (load_file): the tensors own their memory, so the file may
        # be pruned or replaced while they are in use (a resumed run removes old checkpoints), on any OS.
        data = Path(path).read_bytes()
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads((header.get("__metadata__") or {}).get("cnnlab", "{}"))
    except Exception as e:  # a truncated or damaged header surfaces as various errors
        raise CnnlabError(f"{path}: not a readable safetensors file ({e})") from None
    # st_load returns the names in hash order, different on every call: give the order of the data in the file
    # (as load_file does).
    order = sorted(tensors, key=lambda k: (*header[k]["data_offsets"], k))
    return {k: tensors[k] for k in order}, meta


def state_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@dataclass(frozen=True)
class Checkpoint:
    manifest: Path
    step: int
    epoch: int
    weights: Path
    state: Path
    info: dict[str, Any]

    def load_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return load_weights(self.weights)

    def load_state(self) -> dict[str, Any]:
        return load_state_file(self.state)


def load_state_file(path: Path) -> dict[str, Any]:
    """A training-state file, read with torch.load(weights_only=True): tensors, numbers, strings, containers.

    A file holding anything else (Python objects, code) is refused, never unpickled; torch's own message
    suggests weights_only=False, which would run whatever the file contains, so it is not passed on.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CnnlabError(
            f"{path}: refused: it holds Python objects beyond tensors and numbers, which cnnlab never unpickles "
            "(cnnlab writes none; was the file replaced?)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CnnlabError(f"{path}: not a readable training-state file ({type(e).__name__})") from None


def _verify(manifest: Path) -> Checkpoint:
    """Parse a manifest and check both files' sizes and checksums; raises CnnlabError on any mismatch."""
    try:
        info = json.loads(manifest.read_text())
        files = info["files"]
    except (OSError, ValueError, KeyError) as e:
        raise CnnlabError(f"{manifest.name}: unreadable manifest ({e})") from None
    paths = {}
    for role in ("weights", "state"):
        entry = files.get(role)
        if entry is None:
            if role == "state":  # best checkpoints may carry weights only
                paths[role] = None
                continue
            raise CnnlabError(f"{manifest.name}: no {role} entry")
        p = manifest.parent / entry["name"]
        try:
            data = p.read_bytes()
        except OSError:
            raise CnnlabError(f"{manifest.name}: {entry['name']} is missing") from None
        if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
            raise CnnlabError(f"{entry['name']} is corrupt or truncated ({len(data)} bytes, expected {entry['bytes']})")
        paths[role] = p
    return Checkpoint(manifest, int(info["step"]), int(info["epoch"]), paths["weights"], paths["state"], info)


class CheckpointDir:
    """The checkpoints of one run: save, prune, and find the newest one that verifies."""

    def __init__(self, root: str | Path, log: Callable[[str], None] = print):
        self.root = Path(root)
        self.log = log

    def _manifests(self) -> list[tuple[int, Path]]:
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            m = _STEP_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found, reverse=True)

    def save(
        self,
        step: int,
        epoch: int,
        weights: dict[str, torch.Tensor],
        state: dict[str, Any] | None,
        meta: dict[str, Any],
        info: dict[str, Any] | None = None,
        keep_last: int = 2,
    ) -> Checkpoint:
        stem = f"step-{step:08d}"
        ckpt = self._write(stem, f"{stem}.json", step, epoch, weights, state, meta, info)
        # Prune only after the new checkpoint is committed: at every instant one good checkpoint exists.
        for _, old in self._manifests()[keep_last:]:
            self._remove(old)
        self._remove_orphans()
        return ckpt

    def save_best(
        self, step: int, epoch: int, weights: dict[str, torch.Tensor], meta: dict[str, Any], info: dict[str, Any]
    ) -> Checkpoint:
        previous = self.best()
        ckpt = self._write(f"best-{step:08d}", "best.json", step, epoch, weights, None, meta, info)
        if previous is not None and previous.weights != ckpt.weights:
            previous.weights.unlink(missing_ok=True)
        return ckpt

    def _write(
        self,
        stem: str,
        manifest_name: str,
        step: int,
        epoch: int,
        weights: dict[str, torch.Tensor],
        state: dict[str, Any] | None,
        meta: dict[str, Any],
        info: dict[str, Any] | None,
    ) -> Checkpoint:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            files = {}
            wbytes = weights_bytes(weights, {**meta, "step": step, "epoch": epoch})
            _write_bytes(self.root / f"{stem}.safetensors", wbytes)
            files["weights"] = {"name": f"{stem}.safetensors", "sha256": _sha256(wbytes), "bytes": len(wbytes)}
            if state is not None:
                sbytes = state_bytes(state)
                _write_bytes(self.root / f"{stem}.state.pt", sbytes)
                files["state"] = {"name": f"{stem}.state.pt", "sha256": _sha256(sbytes), "bytes": len(sbytes)}
            manifest = {"format": FORMAT, "step": step, "epoch": epoch, "files": files, **(info or {})}
            write_json(self.root / manifest_name, manifest)
        except OSError:
            # A full disk mid-checkpoint: give back the space of the files this one wrote (the committed
            # checkpoints are untouched), so the run can still write its metrics and the user can resume.
            with contextlib.suppress(OSError):
                self._remove_orphans()
            raise
        return _verify(self.root / manifest_name)

    def _remove(self, manifest: Path) -> None:
        stem = manifest.name[: -len(".json")]
        manifest.unlink(missing_ok=True)  # uncommit first
        for suffix in (".safetensors", ".state.pt"):
            (self.root / f"{stem}{suffix}").unlink(missing_ok=True)

    def _remove_orphans(self) -> None:
        # Data files whose manifest never got written (a kill mid-save) or was pruned.
        live = {p.name[: -len(".json")] for _, p in self._manifests()}
        best = self.best()
        for p in self.root.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):  # a write killed before its rename
                p.unlink(missing_ok=True)
            elif p.name.startswith("step-") and not p.name.endswith(".json"):
                stem = p.name.split(".", 1)[0]
                if stem not in live:
                    p.unlink(missing_ok=True)
            elif p.name.startswith("best-") and (best is None or p != best.weights):
                p.unlink(missing_ok=True)

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies; damaged newer ones are reported and skipped."""
        for _, manifest in self._manifests():
            try:
                return _verify(manifest)
            except CnnlabError as e:
                self.log(f"warning: skipping checkpoint {manifest.name}: {e}")
        return None

    def best(self) -> Checkpoint | None:
        manifest = self.root / "best.json"
        if not manifest.exists():
            return None
        try:
            return _verify(manifest)
        except CnnlabError as e:
            self.log(f"warning: best checkpoint unusable: {e}")
            return None


def resolve_weights(path: str | Path) -> Path:
    """A weights file from a run directory (its best, else its last checkpoint) or a checkpoint file."""
    p = Path(path)
    if p.is_dir():
        ckpts = CheckpointDir(p / "checkpoints" if (p / "checkpoints").is_dir() else p, log=lambda s: None)
        ck = ckpts.best() or ckpts.latest()
        if ck is None:
            raise CnnlabError(f"{p}: no usable checkpoint in this directory")
        return ck.weights
    if not p.exists():
        raise CnnlabError(f"checkpoint not found: {p}")
    if p.suffix == ".json":
        return _verify(p).weights
    return p
