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


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            from cnnlab.errors import CnnlabError

            raise CnnlabError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", local_rank) if requested == "cuda" else torch.device(requested)
    return torch.device(requested)


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
