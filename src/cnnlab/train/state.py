"""What must survive a restart, as one object: model, optimizer, schedule, grad scaler, EMA, RNGs, counters.

nanoGPT's rule: saved whole and restored whole, so the step loop never handles the fields one by one. The
weights go to safetensors; everything else is `state_dict()`, plain tensors and numbers for
torch.load(weights_only=True).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.train.checkpoint import Checkpoint, CheckpointDir
from cnnlab.train.numerics import unwrap
from cnnlab.train.optim import EMA, LRSchedule
from cnnlab.train.seeding import rank_seed, rng_state, set_rng_state


def fresh_accum() -> dict[str, float]:
    """The running sums of the epoch's training loss and accuracy (summed over images)."""
    return {"loss": 0.0, "correct": 0.0, "seen": 0.0}


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    ema: EMA | None
    emulator: Any = None  # cnnlab.precision.Emulator when the recipe emulates a number format
    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken (skipped non-finite steps included)
    step_in_epoch: int = 0  # batches of the current epoch consumed
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    best_acc: float = -1.0
    train_seconds: float = 0.0
    accum: dict[str, float] = field(default_factory=fresh_accum)
    nonfinite_run: int = 0  # consecutive non-finite losses

    def state_dict(self, seed: int) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "emulator": self.emulator.state_dict() if self.emulator is not None else None,
            "rng": rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "history": self.history,
            "best_acc": self.best_acc,
            "train_seconds": self.train_seconds,
            "accum": self.accum,
            "nonfinite_run": self.nonfinite_run,
            "threads": torch.get_num_threads(),
            # The data order is a pure function of these, recorded so the run directory says so.
            "data_order": {"seed": seed, "epoch": self.epoch, "batches_consumed": self.step_in_epoch},
        }

    def save(self, ckpts: CheckpointDir, meta: dict[str, Any], seed: int, keep_last: int, stop: str = "") -> None:
        weights = unwrap(self.model).state_dict()
        info = {"stop": stop} if stop else None
        ckpts.save(self.step, self.epoch, weights, self.state_dict(seed), meta, info=info, keep_last=keep_last)

    def restore(self, ck: Checkpoint, seed: int, rank: int, threads: int) -> None:
        """Continue from `ck`: weights, optimizer, schedule, scaler, EMA, counters, thread count, RNGs."""
        weights, _ = ck.load_weights()
        unwrap(self.model).load_state_dict(weights)
        st = ck.load_state()
        self.optimizer.load_state_dict(st["optimizer"])
        self.schedule.load_state_dict(st["schedule"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        if self.ema is not None and st.get("ema") is not None:
            self.ema.load_state_dict(st["ema"])
        if self.emulator is not None and st.get("emulator") is not None:
            self.emulator.load_state_dict(st["emulator"], next(unwrap(self.model).parameters()).device)
        self.epoch, self.step, self.step_in_epoch = int(st["epoch"]), int(st["step"]), int(st["step_in_epoch"])
        self.history = list(st["history"])
        self.best_acc = float(st["best_acc"])
        self.train_seconds = float(st["train_seconds"])
        self.accum = dict(st["accum"])
        self.nonfinite_run = int(st.get("nonfinite_run", 0))
        if st.get("threads") and not threads:
            torch.set_num_threads(int(st["threads"]))  # bit-exactness needs the same thread count
        set_rng_state(st["rng"])
        if rank > 0:  # only rank 0's RNG is saved; other ranks continue from a derived seed
            torch.manual_seed(rank_seed(seed, rank, self.step))
