"""The training loop: `train` starts or resumes a run and leaves a complete run directory.

Exact resume rests on three facts: the data order and augmentation of an epoch are a pure function of
(seed, epoch), so a resumed epoch replays the batches it already consumed without training on them; every other
source of randomness (torch, numpy, python RNGs) is saved in the checkpoint at a step boundary (state.py); and
the learning rate is a pure function of the step. On the CPU with the same thread count, a run killed at any
moment and resumed therefore ends with bit-identical weights.

The shape of it: `train` claims the run directory; `_setup` reads the data, builds the model and the
TrainState (or restores it from the newest good checkpoint); `_fit` runs epochs of `_step`s, saving as it goes;
`_finish` tests the best checkpoint. Numerics, seeding, signals and the state object live in their own modules.
"""

from __future__ import annotations

import contextlib
import errno
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.precision.emulate import emulator_of
from cnnlab.train import ddp, signals, tensorboard
from cnnlab.train.checkpoint import CheckpointDir
from cnnlab.train.data_adapter import DataBundle, data_path_missing, open_data, resolve_data_spec
from cnnlab.train.evaluate import evaluate_loader
from cnnlab.train.numerics import autocast, check_precision, loss_fn, to_device, unwrap, use_channels_last
from cnnlab.train.optim import EMA, LRSchedule, build_optimizer, make_groups
from cnnlab.train.progress import Progress
from cnnlab.train.recipe import Recipe
from cnnlab.train.rundir import (
    RunLock,
    check_new_run_dir,
    default_run_dir,
    environment,
    plot_curves,
    read_run,
    write_metrics,
    write_start,
)
from cnnlab.train.seeding import seed_everything
from cnnlab.train.setup import build_model, check_input_size, fit_input_size, model_meta, prepare_transfer
from cnnlab.train.state import TrainState, fresh_accum

__all__ = ["NonFiniteLossError", "Result", "evaluate_loader", "train"]


class NonFiniteLossError(CnnlabError):
    """The loss was NaN or infinite for `max_nonfinite` steps in a row."""


@dataclass
class Result:
    run_dir: Path
    status: str  # "finished" | "interrupted"
    summary: dict[str, Any] = field(default_factory=dict)
    signal: int | None = None  # what stopped an interrupted run (None: a peer process stopped it)


# -- the run ------------------------------------------------------------------------------------------------


def train(
    recipe: Recipe,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    model: nn.Module | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
    param_groups: Callable[[nn.Module], list[dict[str, Any]]] | None = None,
    train_mode: Callable[[nn.Module], None] | None = None,
) -> Result:
    """Train `recipe.model` on `recipe.data`, or continue the run in `resume` exactly where it stopped.

    Fine-tuning is the recipe's (`weights`, `freeze`, `lr_mult`, `unfreeze_at`), so a resumed run rebuilds it
    from recipe.toml. For custom networks: `model` replaces the registry lookup; `param_groups(model)` replaces
    the optimizer's groups (each may carry an `lr_mult`); `train_mode(model)` replaces `model.train()`. Returns
    when the run finishes or stops on SIGTERM/SIGINT (after saving a checkpoint at the step boundary).
    """
    if recipe.tensorboard:
        tensorboard.require()  # before the run directory is claimed: a missing package is one line, no run made
    d = ddp.setup(device)
    hooks = {"param_groups": param_groups, "train_mode": train_mode}
    if resume is not None:
        run = Path(resume)
    else:
        run = Path(out) if out is not None else default_run_dir(recipe.model or "model")
    rank_log = log if d.is_main else (lambda s: None)
    try:
        with _claim(run, resume is not None, d):
            try:
                result = _train(recipe, run, resume is not None, model, d, rank_log, hooks)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _disk_full(run, e) from None
                raise
        # Every rank leaves its last collective before any of them destroys the group. Without this, a rank
        # that finished first tore down its gloo pairs under a peer still reading, and the peer aborted
        # ("terminate called without an active exception"); seen with two torchrun jobs on 2 busy cores.
        ddp.barrier(d)
        return result
    finally:
        ddp.teardown(d)


class DiskFullError(CnnlabError):
    """The disk filled up while the run wrote a file; the last good checkpoint and metrics are kept."""


def _disk_full(run: Path, e: OSError) -> DiskFullError:
    last = CheckpointDir(run / "checkpoints", log=lambda s: None).latest()
    where = f"the last good checkpoint is at step {last.step}" if last else "no checkpoint fit"
    return DiskFullError(
        f"disk full while writing {e.filename or run} ({e.strerror}); {where}, metrics.csv is intact; "
        f"free space and continue with: cnnlab train --resume {run}"
    )


@contextlib.contextmanager
def _claim(run: Path, resuming: bool, d: ddp.Dist):  # noqa: ANN202
    """Rank 0 locks the run directory (and, for a new run, checks it holds no other run); every rank agrees."""
    error: CnnlabError | None = None
    lock = RunLock(run)
    if d.is_main:
        try:
            if not resuming:
                check_new_run_dir(run)
            elif not run.is_dir():
                raise CnnlabError(f"run directory not found: {run}")
            lock.__enter__()
        except CnnlabError as e:
            error = e
    (refused,) = ddp.any_flag(d, error is not None)
    if error is not None:
        raise error
    if refused:
        raise CnnlabError(f"rank 0 refused the run directory {run}")
    try:
        yield
    finally:
        lock.__exit__()


@dataclass
class _Run:
    """What the steps of one run read and never change: the recipe, data, process group, plan and files."""

    recipe: Recipe
    run: Path
    data: DataBundle
    d: ddp.Dist
    log: Callable[[str], None]
    ckpts: CheckpointDir
    meta: dict[str, Any]
    steps_per_epoch: int
    total_steps: int
    epochs: int
    channels_last: bool
    set_train_mode: Callable[[nn.Module], None]
    epoch_start: Callable[[nn.Module, int], None]
    wrapper: _Wrapper
    tb: tensorboard.TensorBoardLog | None = None  # recipe.tensorboard: event files in RUN_DIR/tensorboard

    @property
    def dev(self) -> torch.device:
        return self.d.device

    def save(self, s: TrainState, stop: str = "") -> None:
        if self.d.is_main:
            s.save(self.ckpts, self.meta, self.recipe.seed, self.recipe.keep_last, stop)


def _train(
    recipe: Recipe,
    run: Path,
    resuming: bool,
    model: nn.Module | None,
    d: ddp.Dist,
    log: Callable[[str], None],
    hooks: dict[str, Any],
) -> Result:
    r, s = _setup(recipe, run, resuming, model, d, log, hooks)
    r.tb = tensorboard.open_log(r.recipe, run, r.data, d, s.step)
    try:
        status, sig = _fit(r, s)
        if r.tb is not None:
            r.tb.flush()  # a stopped epoch's steps (every rank gets here: the flush averages over them)
        if d.is_main and r.recipe.plots:
            plot_curves(run, s.history, title=f"{r.meta['model']} on {r.data.spec}")
        if status == "interrupted":
            return Result(run, status, signal=sig)
        summary = _finish(run, r.recipe, r.data, s.model, s.ema, r.ckpts, s.history, s.train_seconds, d, log)
        if r.tb is not None:
            r.tb.confusion(run, r.data, r.recipe, s.model, s.step)
        return Result(run, status, summary)
    finally:
        if r.tb is not None:
            r.tb.close()


def _run_recipe(recipe: Recipe, run: Path, resuming: bool) -> tuple[Recipe, dict[str, Any] | None]:
    """A new run's recipe (data path made absolute), or a resumed run's own (with the data where it is now)."""
    if not resuming:
        return recipe.replace(data=resolve_data_spec(recipe.data)), None  # eval and --resume work from any cwd
    given = recipe
    recipe, run_info = read_run(run)
    # Display only, or where the data lives now (its content is checked): cannot change the run's numbers.
    recipe = recipe.replace(progress=given.progress, data=given.data or recipe.data)
    if data_path_missing(recipe.data):
        raise CnnlabError(
            f"the run's data {recipe.data} is not there (moved?); point to it with: "
            f"cnnlab train --resume {run} --data SPEC"
        )
    return recipe, run_info


def _setup(
    recipe: Recipe,
    run: Path,
    resuming: bool,
    model: nn.Module | None,
    d: ddp.Dist,
    log: Callable[[str], None],
    hooks: dict[str, Any],
) -> tuple[_Run, TrainState]:
    """Data, model, optimizer and the rest of the TrainState; a resumed run's from its newest good checkpoint."""
    recipe, run_info = _run_recipe(recipe, run, resuming)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    dev = d.device
    check_precision(recipe.precision, dev)
    if recipe.batch_size % d.world_size:
        raise CnnlabError(f"batch_size {recipe.batch_size} is not divisible by the {d.world_size} processes")
    seed_everything(recipe.seed)
    data = open_data(recipe, rank=d.rank, world_size=d.world_size, device=dev)
    if run_info is not None and list(run_info.get("classes", data.classes)) != list(data.classes):
        raise CnnlabError(f"cannot resume {run}: the data's classes differ from the run's (was {data.spec} changed?)")
    model = build_model(recipe, data, model)
    if not resuming:
        fitted = fit_input_size(recipe, data, model, log)
        if fitted is not recipe:  # the data was smaller than the model's minimum: read it again at that size
            recipe = fitted
            data = open_data(recipe, rank=d.rank, world_size=d.world_size, device=dev)
        if data.test_split != "test":
            log(f"{data.spec} has no test split: its val split selects the checkpoint and is the held-out figure")
    check_input_size(data, model)
    ckpts = CheckpointDir(run / "checkpoints", log=log)
    ck = ckpts.latest() if resuming else None
    transfer = prepare_transfer(recipe, model, load_weights=ck is None, log=log)
    model.to(dev)
    channels_last = use_channels_last(recipe, dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    meta = model_meta(recipe, data, model)

    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise CnnlabError(f"the training set has fewer images than one batch ({recipe.batch_size})")
    total_steps = recipe.iterations or recipe.epochs * steps_per_epoch
    if hooks["param_groups"]:
        groups = hooks["param_groups"](model)
    else:  # gradual unfreezing: the frozen parameters are in the groups from the start, so resume is exact
        args = (recipe.lr, recipe.weight_decay, transfer.mults, recipe.decay_norm_and_bias)
        groups = make_groups(model, *args, include_frozen=recipe.unfreeze_at > 0)
    s = TrainState(
        model=model,
        optimizer=build_optimizer(model, recipe, groups=groups),
        schedule=LRSchedule(recipe, steps_per_epoch, total_steps),
        scaler=torch.amp.GradScaler(dev.type, enabled=recipe.precision == "fp16"),
        ema=EMA(model, recipe.ema_decay) if recipe.ema_decay > 0 else None,
        emulator=emulator_of(model),
    )
    r = _Run(
        recipe=recipe,
        run=run,
        data=data,
        d=d,
        log=log,
        ckpts=ckpts,
        meta=meta,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        epochs=math.ceil(total_steps / steps_per_epoch),
        channels_last=channels_last,
        set_train_mode=hooks["train_mode"] or transfer.train_mode,
        epoch_start=lambda m, epoch: transfer.epoch_start(m, epoch, log),
        wrapper=_Wrapper(model, d, recipe.compile),
    )
    if not resuming:
        if d.is_main:
            run_info = {"model": meta["model"], "data": data.spec, **{k: meta[k] for k in meta if k != "model"}}
            write_start(run, recipe, run_info, environment(dev, d.world_size))
        log(f"run directory: {run}")
        if s.emulator is not None:
            log(f"emulated number formats: {s.emulator.e.describe()}")
    elif ck is None:
        log(f"resume: no usable checkpoint in {run}; starting from the beginning")
    else:
        s.restore(ck, recipe.seed, d.rank, recipe.threads)
        log(f"resumed {run} from {ck.manifest.name}: epoch {s.epoch + 1}, step {s.step}")
    return r, s


def _fit(r: _Run, s: TrainState) -> tuple[str, int | None]:
    """Epochs until the run's length; ("interrupted", signal) when SIGTERM/SIGINT or a peer stopped it."""
    t_run, step_run0 = time.perf_counter(), s.step  # this process's pace, for the whole run's ETA
    r.set_train_mode(s.model)
    with signals.StopRequest() as stop:
        while s.epoch < r.epochs and s.step < r.total_steps:
            stopped, bar = _epoch(r, s, stop)
            if stopped:
                r.save(s, stop=signals.name(stop.signal) if stop.signal else "peer")
                bar.close()
                r.log(
                    f"stopped by {signals.name(stop.signal)} at step {s.step}; "
                    f"continue with: cnnlab train --resume {r.run}"
                )
                return "interrupted", stop.signal
            _epoch_end(r, s, bar, time.perf_counter() - t_run, s.step - step_run0)
    return "finished", None


class _Meter:
    """The training loss and accuracy of the steps since the last flush, kept on the device (no sync per step)."""

    def __init__(self, dev: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss x images, correct, images

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():
            self.sums[0] += loss.detach().double() * y.numel()
            self.sums[1] += (logits.argmax(1) == y).sum()
            self.sums[2] += y.numel()

    def means(self) -> tuple[float, float]:
        seen = self.sums[2].clamp(min=1)
        return float(self.sums[0] / seen), float(self.sums[1] / seen)

    def flush(self, accum: dict[str, float]) -> dict[str, float]:
        loss, correct, seen = (float(v) for v in self.sums)
        self.sums.zero_()
        return {"loss": accum["loss"] + loss, "correct": accum["correct"] + correct, "seen": accum["seen"] + seen}


def _epoch(r: _Run, s: TrainState, stop: signals.StopRequest) -> tuple[bool, Progress]:
    """The rest of epoch `s.epoch` (from batch `s.step_in_epoch`); True when a stop was requested."""
    r.epoch_start(s.model, s.epoch)  # may unfreeze parts (also at a resumed epoch)
    train_model = r.wrapper.current()
    r.data.train.set_epoch(s.epoch)
    n_batches = min(r.steps_per_epoch, r.total_steps - (s.step - s.step_in_epoch))
    show = r.recipe.progress and r.d.is_main
    later = r.total_steps - (s.step - s.step_in_epoch) - n_batches  # the steps of the epochs after this one
    bar = Progress(n_batches, f"epoch {s.epoch + 1}/{r.epochs}", show, start=s.step_in_epoch, later=later)
    t_epoch = time.perf_counter()
    meter = _Meter(r.dev)
    every = r.recipe.checkpoint_every
    for x, y in r.data.train.iter_from(s.step_in_epoch):
        if s.step >= r.total_steps:
            break
        x, y = to_device(x, y, r.dev, r.channels_last)
        stop_now = _step(r, s, train_model, x, y, stop, meter)
        bar.update(x.shape[0] * r.d.world_size, *(meter.means() if bar.due() else (None, None)))
        if stop_now:
            s.train_seconds += time.perf_counter() - t_epoch
            s.accum = meter.flush(s.accum)
            return True, bar
        if every and s.step % every == 0 and s.step_in_epoch < n_batches:
            s.train_seconds += time.perf_counter() - t_epoch
            t_epoch = time.perf_counter()
            s.accum = meter.flush(s.accum)
            r.save(s)
    s.train_seconds += time.perf_counter() - t_epoch
    s.accum = meter.flush(s.accum)
    return False, bar


def _step(
    r: _Run, s: TrainState, train_model: nn.Module, x: torch.Tensor, y: torch.Tensor, stop: Any, meter: _Meter
) -> bool:
    """One optimizer step (skipped when the loss or gradients are not finite); True when the run must stop."""
    recipe = r.recipe
    lr = s.schedule.apply(s.optimizer, s.step)
    with autocast(recipe.precision, r.dev):
        out = train_model(x)
    loss, logits = loss_fn(out, y, recipe)
    finite = bool(torch.isfinite(loss))
    nonfinite, stop_now = ddp.any_flag(r.d, not finite, stop.signal is not None)
    s.optimizer.zero_grad(set_to_none=True)
    if nonfinite:
        s.nonfinite_run += 1
        r.log(f"warning: non-finite loss at step {s.step} ({s.nonfinite_run} in a row); step skipped")
        if s.nonfinite_run >= recipe.max_nonfinite:
            raise NonFiniteLossError(_nonfinite_message(s.nonfinite_run, s.epoch, s.step, recipe, r.ckpts))
    else:
        s.nonfinite_run = 0
        _update(r, s, loss)
        meter.add(loss, logits, y)
        if r.tb is not None:
            r.tb.step(s.step + 1, loss, lr)
    s.step += 1
    s.step_in_epoch += 1
    return stop_now


def _update(r: _Run, s: TrainState, loss: torch.Tensor) -> None:
    """Backward, optional clipping, and the optimizer (and EMA) step unless the gradients are not finite."""
    if s.emulator is not None:  # emulated formats: their own backward, rounding, loss scale and update
        if s.emulator.step(loss, s.optimizer, unwrap(s.model), r.recipe.grad_clip) and s.ema is not None:
            s.ema.update(s.model)
        return
    scaler = s.scaler
    scaler.scale(loss).backward()
    grad_ok = True
    if r.recipe.grad_clip > 0 or not scaler.is_enabled():
        scaler.unscale_(s.optimizer)
        # The norm doubles as the finiteness check outside fp16 (where the scaler does it): a step with inf/NaN
        # gradients would write non-finite weights. Under DDP the gradients are all-reduced: every rank agrees.
        norm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), r.recipe.grad_clip or math.inf)
        grad_ok = scaler.is_enabled() or bool(torch.isfinite(norm))
    if grad_ok:
        scaler.step(s.optimizer)  # fp16: skipped (and the scale lowered) when gradients overflowed
        scaler.update()
        if s.ema is not None:
            s.ema.update(s.model)
    else:
        r.log(f"warning: non-finite gradient at step {s.step}; step skipped")


def _epoch_end(r: _Run, s: TrainState, bar: Progress, run_elapsed: float, run_steps: int) -> None:
    """The epoch's row (train and val loss and accuracy), the best checkpoint, a checkpoint, metrics.csv."""
    tot = ddp.sum_tensor(
        r.d, torch.tensor([s.accum["loss"], s.accum["correct"], s.accum["seen"]], dtype=torch.float64, device=r.dev)
    )
    seen = max(1.0, float(tot[2]))
    row: dict[str, Any] = {
        "epoch": s.epoch + 1,
        "step": s.step,
        "lr": s.schedule.r.lr * s.schedule.factor(max(0, s.step - 1)),
        "train_loss": float(tot[0]) / seen,
        "train_acc": float(tot[1]) / seen,
        "val_loss": None,
        "val_acc": None,
    }
    rate = bar.close(row["train_loss"], row["train_acc"])
    eval_model = s.model if s.ema is None else _ema_model(s.model, s.ema)
    if r.data.val is not None:
        v = evaluate_loader(eval_model, r.data.val, r.recipe, r.dev, r.d)
        row["val_loss"], row["val_acc"] = v["loss"], v["top1"]
        r.set_train_mode(s.model)
    if r.data.train_eval is not None:
        v = evaluate_loader(eval_model, r.data.train_eval, r.recipe, r.dev, r.d)
        row["clean_train_loss"], row["clean_train_acc"] = v["loss"], v["top1"]
        r.set_train_mode(s.model)
    if s.emulator is not None:
        row.update(s.emulator.flush())
    row["seconds"] = round(s.train_seconds, 3)
    row["img_per_s"] = round(rate, 1)
    s.history.append(row)
    if r.tb is not None:
        r.tb.epoch(row)
    s.schedule.epoch_end(row["val_acc"])
    metric = row["val_acc"] if row["val_acc"] is not None else row["train_acc"]
    improved = metric > s.best_acc
    if improved:
        s.best_acc = metric
    r.log(
        f"epoch {s.epoch + 1}/{r.epochs}: loss {row['train_loss']:.4f}  train acc {100 * row['train_acc']:.2f}%"
        + (f"  val acc {100 * row['val_acc']:.2f}%" if row["val_acc"] is not None else "")
        + f"  lr {row['lr']:.3g}  {rate:,.0f} img/s"
        + _run_eta(run_elapsed, run_steps, r.total_steps - s.step)
    )
    s.epoch += 1
    s.step_in_epoch = 0
    s.accum = fresh_accum()
    if r.d.is_main:
        # Metrics first: the smallest file, so a disk that fills up during the checkpoint keeps the epoch's row
        # (a resume from the previous checkpoint recomputes the same row). The plot waits for the end: drawing
        # it costs more than a small epoch.
        write_metrics(r.run, s.history)
        if improved:
            r.ckpts.save_best(s.step, s.epoch, unwrap(eval_model).state_dict(), r.meta, {"val_acc": metric})
        r.save(s)


class _Wrapper:
    """The module the steps run: `model`, wrapped in DistributedDataParallel under torchrun and compiled if asked.

    DDP registers the parameters that require a gradient once, when it wraps the model: a parameter unfrozen
    later would get no all-reduced gradient, so the ranks would drift apart silently. `current()` therefore wraps
    the model again whenever the set of trained parameters has changed (gradual unfreezing). The optimizer holds
    the inner model's parameters, which a new wrapper does not replace, so its state carries over unchanged.
    """

    def __init__(self, model: nn.Module, d: ddp.Dist, compile_model: bool) -> None:
        self.model, self.d, self.compile_model = model, d, compile_model
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        self.wrapped: nn.Module | None = None
        self.trained: tuple[bool, ...] = ()

    def current(self) -> nn.Module:
        trained = tuple(p.requires_grad for p in self.model.parameters())
        if self.wrapped is not None and (not self.d.enabled or trained == self.trained):
            return self.wrapped
        if self.ddp is not None:
            # The old reducer's hooks sit on the parameters themselves: left there, they would fire in the next
            # backward pass and all-reduce into buckets nobody waits for.
            self.ddp._remove_autograd_hooks()
            self.ddp = None
        wrapped: nn.Module = self.model
        if self.d.enabled:
            dev = self.d.device
            # Same device and default process group as the first wrapper. Constructing it broadcasts rank 0's
            # parameters and buffers, which every rank already holds bit for bit.
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dev.index] if dev.type == "cuda" else None
            )
            wrapped = self.ddp
        if self.compile_model:
            wrapped = torch.compile(wrapped)
        self.wrapped, self.trained = wrapped, trained
        return wrapped


def _run_eta(elapsed: float, steps_done: int, steps_left: int) -> str:
    """The whole run's remaining time at this process's pace (evaluation included), for the epoch line."""
    if steps_left <= 0 or steps_done <= 0:
        return ""
    from cnnlab.train.progress import fmt_seconds

    return f"  run ETA {fmt_seconds(elapsed / steps_done * steps_left)}"


def _nonfinite_message(count: int, epoch: int, step: int, recipe: Recipe, ckpts: CheckpointDir) -> str:
    advice = "lower the learning rate"
    advice += " or train in fp32 (--set precision=fp32)" if recipe.precision != "fp32" else ""
    advice += "" if recipe.grad_clip > 0 else ", or clip gradients (--set grad_clip=1)"
    last = ckpts.latest()
    kept = (
        f"; the last good checkpoint is kept: {last.weights}"
        if last is not None
        else "; no checkpoint was written before it"
    )
    return f"loss was non-finite for {count} steps in a row (last at epoch {epoch + 1}, step {step}); {advice}{kept}"


def _ema_model(model: nn.Module, ema: EMA) -> nn.Module:
    import copy

    m = copy.deepcopy(unwrap(model))
    m.load_state_dict(ema.state_dict())
    return m


def _finish(
    run: Path,
    recipe: Recipe,
    data: DataBundle,
    model: nn.Module,
    ema: EMA | None,
    ckpts: CheckpointDir,
    history: list[dict[str, Any]],
    train_seconds: float,
    d: ddp.Dist,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Test the best checkpoint (by validation accuracy), write summary.json.

    Under DDP only rank 0 reads the best checkpoint and broadcasts its weights: another rank reading the file
    could see the previous best (rank 0 may still be writing the new one) or, on another machine, no file at all,
    and the ranks' shards of the test set would then be scored with different weights.
    """
    best = ckpts.best() if d.is_main else None
    (has_best,) = ddp.broadcast_flags(d, best is not None)
    eval_model = unwrap(model)
    used = "last"
    if has_best:
        import copy

        eval_model = copy.deepcopy(eval_model)
        if best is not None:
            eval_model.load_state_dict(best.load_weights()[0])
        ddp.broadcast_module(d, eval_model)
        used = "best"
    elif ema is not None:
        eval_model, used = _ema_model(model, ema), "ema"
    test = evaluate_loader(eval_model, data.test, recipe, d.device, d) if data.test is not None else None
    last = ckpts.latest()
    steps = history[-1]["step"] if history else 0
    images = steps * recipe.batch_size  # global batches; a short last batch is dropped by the loader
    summary = {
        "model": getattr(unwrap(model), "model_name", "") or recipe.model,
        "data": data.spec,
        "test_top1": None if test is None else test["top1"],
        "test_top5": None if test is None else test["top5"],
        "test_loss": None if test is None else test["loss"],
        "test_images": None if test is None else test["n"],
        "test_split": data.test_split,  # "val" when the source has no test split
        "tested_weights": used,
        "best_val_acc": max((r["val_acc"] for r in history if r.get("val_acc") is not None), default=None),
        "epochs": len(history),
        "steps": steps,
        "train_seconds": round(train_seconds, 3),
        "images_per_second": round(images / train_seconds, 1) if train_seconds > 0 else None,
        "checkpoints": {
            "last": None if last is None else str(last.weights),
            "best": None if best is None else str(best.weights),
        },
        "run_dir": str(run),
    }
    if d.is_main:
        from cnnlab.fileio import write_json

        write_json(run / "summary.json", summary)
        if test is not None:
            log(
                f"{data.test_split}: top-1 {100 * test['top1']:.2f}%  top-5 {100 * test['top5']:.2f}%  "
                f"({test['n']} images)"
            )
    return summary
