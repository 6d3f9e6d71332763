"""DistributedDataParallel plumbing: one process per device, launched by torchrun.

gloo on CPU, NCCL on GPU. Every rank reads the same checkpoint; only rank 0 writes. `launch` re-runs the current
command under `python -m torch.distributed.run` for `cnnlab train --nproc N`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    from cnnlab.errors import CnnlabError

    def unknown() -> CnnlabError:
        return CnnlabError(f"unknown device '{requested}'; use one of {', '.join(DEVICES)}")

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError):
        raise unknown() from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise unknown()
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CnnlabError(f"device '{requested}' requested but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CnnlabError(f"device '{requested}': this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", local_rank) if dev.index is None else dev
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise CnnlabError(f"device '{requested}' requested but MPS is not available; use --device cpu")
    return dev


def setup(device: str = "auto") -> Dist:
    """Join the process group when torchrun's environment says so; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=pick_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        # The store's keys are prefixed with torchrun's restart count: after `--max-restarts` restarts a group,
        # ranks must not read the addresses the dead group published (seen here: gloo then connects to a
        # rank that no longer exists and fails with "Connection refused").
        store, _, _ = next(dist.rendezvous("env://"))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            store=dist.PrefixStore(f"cnnlab/attempt_{attempt}", store),
            rank=rank,
            world_size=world,
        )
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_flag(d: Dist, *flags: bool) -> list[bool]:
    """OR each flag over all ranks, so every rank takes the same branch (skip a step, stop and save)."""
    if not d.enabled:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def all_flags(d: Dist, *flags: bool) -> list[bool]:
    """AND each flag over all ranks."""
    if not d.enabled:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return [bool(v) for v in t.tolist()]


def sum_tensor(d: Dist, t: torch.Tensor) -> torch.Tensor:
    if d.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_flags(d: Dist, *flags: bool) -> list[bool]:
    """Rank 0's value of each flag, on every rank."""
    if not d.enabled:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=d.device)
    dist.broadcast(t, src=0)
    return [bool(v) for v in t.tolist()]


@torch.no_grad()
def broadcast_module(d: Dist, module: torch.nn.Module) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's."""
    if not d.enabled:
        return
    for t in [*module.parameters(), *module.buffers()]:
        buf = t.detach().contiguous()  # collectives want dense tensors; a channels-last weight is not
        dist.broadcast(buf, src=0)
        if buf.data_ptr() != t.data_ptr():
            t.copy_(buf)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def launch(nproc: int, argv: list[str], max_restarts: int = 0) -> int:
    """Run `cnnlab <argv>` under torchrun with `nproc` local processes; returns its exit code."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={max_restarts}",
        "-m",
        "cnnlab",
        *argv,
    ]
    return subprocess.call(cmd)
