"""The training loop: one function, `train`, that starts or resumes a run and leaves a complete run directory.

Exact resume rests on three facts: the data order and augmentation of an epoch are a pure function of
(seed, epoch), so a resumed epoch replays the batches it already consumed without training on them; every other
source of randomness (torch, numpy, python RNGs) is saved in the checkpoint at a step boundary; and the learning
rate is a pure function of the step. On the CPU with the same thread count, a run killed at any moment and
resumed therefore ends with bit-identical weights.
"""

from __future__ import annotations

import contextlib
import errno
import math
import random
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.machine import cpu_has_native_bf16
from cnnlab.models.base import AuxOutputs
from cnnlab.train import ddp
from cnnlab.train.checkpoint import CheckpointDir
from cnnlab.train.data_adapter import DataBundle, data_path_missing, open_data, resolve_data_spec
from cnnlab.train.optim import EMA, LRSchedule, build_optimizer
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


class NonFiniteLossError(CnnlabError):
    """The loss was NaN or infinite for `max_nonfinite` steps in a row."""


@dataclass
class Result:
    run_dir: Path
    status: str  # "finished" | "interrupted"
    summary: dict[str, Any] = field(default_factory=dict)
    signal: int | None = None  # what stopped an interrupted run (None: a peer process stopped it)


# -- numerics -----------------------------------------------------------------------------------------------


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise CnnlabError("precision bf16: this GPU has no bf16 support; use precision=fp16 or fp32")
        if device.type == "cpu" and not cpu_has_native_bf16():
            raise CnnlabError(
                "precision bf16: this CPU has no native bf16 instructions (avx512_bf16/amx_bf16), so bf16 "
                "would be emulated and slower than fp32; use --set precision=fp32"
            )


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(recipe: Recipe, device: torch.device) -> bool:
    """Resolve the recipe's channels_last ("auto" | "true" | "false") for this device and precision."""
    if recipe.channels_last == "auto":
        return device.type == "cpu" or (device.type == "cuda" and recipe.precision != "fp32")
    return recipe.channels_last == "true"


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


def loss_fn(out: Any, y: torch.Tensor, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits): cross-entropy, plus `aux_weight` x each auxiliary head's (Szegedy et al. 2014 Sec. 5)."""
    if isinstance(out, AuxOutputs):
        logits = out.logits
        loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        for aux in out.aux:
            loss = loss + recipe.aux_weight * F.cross_entropy(aux.float(), y, label_smoothing=recipe.label_smoothing)
        return loss, logits
    return F.cross_entropy(out.float(), y, label_smoothing=recipe.label_smoothing), out


# -- state --------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _StopRequest:
    """SIGTERM / Ctrl-C set a flag; the loop saves at the next step boundary and returns."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread handlers cannot be installed: no graceful stop there.
            with contextlib.suppress(ValueError):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# -- evaluation during training -----------------------------------------------------------------------------


@torch.no_grad()
def evaluate_loader(
    model: nn.Module, loader: Any, recipe: Recipe, device: torch.device, d: ddp.Dist, topk: int = 5
) -> dict[str, float]:
    """Loss, top-1 and top-k accuracy over a loader (summed over ranks under DDP)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, topk, n
    channels_last = use_channels_last(recipe, device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(recipe.precision, device):
            out = model(x)
        logits = out.logits if isinstance(out, AuxOutputs) else out
        logits = logits.float()
        k = min(topk, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
        sums[1] += (top[:, 0] == y).sum()
        sums[2] += (top == y[:, None]).any(dim=1).sum()
        sums[3] += y.numel()
    sums = ddp.sum_tensor(d, sums)
    if was_training:  # the caller's train_mode hook, if any, runs after this
        model.train()
    n = max(1.0, float(sums[3]))
    return {"loss": float(sums[0]) / n, "top1": float(sums[1]) / n, "top5": float(sums[2]) / n, "n": int(sums[3])}


# -- the run ------------------------------------------------------------------------------------------------


def build_model(recipe: Recipe, data: DataBundle, model: nn.Module | None = None, check_size: bool = True) -> nn.Module:
    if model is None:
        from cnnlab.registry import create_model

        if not recipe.model:
            raise CnnlabError("no model given: name one (cnnlab train MODEL ...) or set `model` in the recipe")
        model = create_model(recipe.model, num_classes=len(data.classes), in_chans=data.in_chans)
    if check_size:
        check_input_size(data, model)
    if recipe.dropout >= 0:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = recipe.dropout
    return model


def _model_name(model: nn.Module) -> str:
    return getattr(model, "model_name", "") or type(model).__name__


def check_input_size(data: DataBundle, model: nn.Module) -> None:
    min_size = getattr(model, "min_input_size", 1)
    if data.image_size < min_size:
        raise CnnlabError(
            f"input {data.image_size}x{data.image_size} is too small for {_model_name(model)}, which needs at least "
            f"{min_size}x{min_size}; set image_size (e.g. --set image_size={min_size}) or pick another model"
        )


def fit_input_size(recipe: Recipe, data: DataBundle, model: nn.Module, log: Callable[[str], None]) -> Recipe:
    """The recipe, with image_size raised to the model's minimum when the data's own size is below it.

    LeNet-5 takes 32x32 and MNIST is 28x28 (LeCun et al. 1998 pad the digits to 32); a model is rather trained
    on upsampled images than refused. An image_size the user set is kept (and refused if too small), and
    `strict_size` keeps the refusal. Either way the resolution a model is trained at is said once.
    """
    min_size = getattr(model, "min_input_size", 1)
    name = _model_name(model)
    if data.image_size < min_size and not recipe.image_size and not recipe.strict_size:
        # DEVIATION (LeNet-5 on MNIST): resized (antialiased bilinear) to 32, where the paper pads 28 -> 32.
        log(
            f"{data.spec} is {data.image_size}x{data.image_size}, below {name}'s minimum input: resized to "
            f"{min_size}x{min_size} (--set image_size=N chooses another size, --strict-size refuses instead)"
        )
        return recipe.replace(image_size=min_size)
    native = _paper_input(model)
    if native and data.image_size != native and data.image_size >= min_size:
        log(f"training {name} at {data.image_size}x{data.image_size} (its paper's input is {native}x{native})")
    return recipe


def _paper_input(model: nn.Module) -> int | None:
    from cnnlab.registry import get_entry

    try:
        entry = get_entry(getattr(model, "model_name", ""))
    except (KeyError, CnnlabError):
        return None  # a custom model: no declared input
    return int(entry.family.input_size(entry.name, entry.spec)[-1])


def model_meta(recipe: Recipe, data: DataBundle, model: nn.Module) -> dict[str, Any]:
    """What a weights file needs to be usable alone (eval, predict): architecture, classes, preprocessing."""
    return {
        "model": getattr(model, "model_name", "") or recipe.model,
        "num_classes": len(data.classes),
        "in_chans": data.in_chans,
        "image_size": data.image_size,
        "classes": list(data.classes),
        "mean": [float(v) for v in data.mean],
        "std": [float(v) for v in data.std],
        "data": data.spec,
    }


def train(
    recipe: Recipe,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    model: nn.Module | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
    lr_mults: dict[str, float] | None = None,
    param_groups: Callable[[nn.Module], list[dict[str, Any]]] | None = None,
    train_mode: Callable[[nn.Module], None] | None = None,
    epoch_start: Callable[[nn.Module, int], None] | None = None,
) -> Result:
    """Train `recipe.model` on `recipe.data`, or continue the run in `resume` exactly where it stopped.

    `model` replaces the registry lookup (tests, custom networks, pretrained weights). Fine-tuning hooks:
    `lr_mults` ({"stem": 0.01, ...}) scales each anatomy part's rate; `param_groups(model)` replaces the default
    groups entirely (each group may carry an `lr_mult`); `train_mode(model)` replaces `model.train()` (e.g. to
    keep frozen BatchNorm in eval mode); `epoch_start(model, epoch)` runs before each epoch's first step, also
    a resumed one (gradual unfreezing). Returns when the run finishes or stops on SIGTERM/SIGINT (after
    saving a checkpoint at the step boundary).
    """
    d = ddp.setup(device)
    hooks = {"lr_mults": lr_mults, "param_groups": param_groups, "train_mode": train_mode, "epoch_start": epoch_start}
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


def _train(
    recipe: Recipe,
    run: Path,
    resuming: bool,
    model: nn.Module | None,
    d: ddp.Dist,
    log: Callable[[str], None],
    hooks: dict[str, Any],
) -> Result:
    resume = run if resuming else None
    if resuming:
        given = recipe
        recipe, run_info = read_run(run)
        # Display only, or where the data lives now (its content is checked below): cannot change the numbers.
        recipe = recipe.replace(progress=given.progress, data=given.data or recipe.data)
        if data_path_missing(recipe.data):
            raise CnnlabError(
                f"the run's data {recipe.data} is not there (moved?); point to it with: "
                f"cnnlab train --resume {run} --data SPEC"
            )
    else:
        recipe = recipe.replace(data=resolve_data_spec(recipe.data))  # so eval and --resume work from any cwd
        run_info = None
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
    model = build_model(recipe, data, model, check_size=False)
    if not resuming:
        fitted = fit_input_size(recipe, data, model, log)
        if fitted is not recipe:  # the data was smaller than the model's minimum: read it again at that size
            recipe = fitted
            data = open_data(recipe, rank=d.rank, world_size=d.world_size, device=dev)
        if data.test_split != "test":
            log(f"{data.spec} has no test split: its val split selects the checkpoint and is the held-out figure")
    check_input_size(data, model)
    model.to(dev)
    channels_last = use_channels_last(recipe, dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    meta = model_meta(recipe, data, model)

    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise CnnlabError(f"the training set has fewer images than one batch ({recipe.batch_size})")
    total_steps = recipe.iterations or recipe.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    set_train_mode: Callable[[nn.Module], None] = hooks["train_mode"] or (lambda m: m.train())
    groups = hooks["param_groups"](model) if hooks["param_groups"] else None
    optimizer = build_optimizer(model, recipe, hooks["lr_mults"], groups=groups)
    schedule = LRSchedule(recipe, steps_per_epoch, total_steps)
    scaler = torch.amp.GradScaler(dev.type, enabled=recipe.precision == "fp16")
    ema = EMA(model, recipe.ema_decay) if recipe.ema_decay > 0 else None
    ckpts = CheckpointDir(run / "checkpoints", log=log)

    # Progress so far; a resumed run reads it from the newest good checkpoint.
    epoch, step, step_in_epoch = 0, 0, 0
    history: list[dict[str, Any]] = []
    best_acc = -1.0
    train_seconds = 0.0
    acc_state = {"loss": 0.0, "correct": 0.0, "seen": 0.0}
    nonfinite_run = 0

    if resume is None:
        if d.is_main:
            run_info = {"model": meta["model"], "data": data.spec, **{k: meta[k] for k in meta if k != "model"}}
            write_start(run, recipe, run_info, environment(dev, d.world_size))
        log(f"run directory: {run}")
    else:
        ck = ckpts.latest()
        if ck is None:
            log(f"resume: no usable checkpoint in {run}; starting from the beginning")
        else:
            weights, _ = ck.load_weights()
            unwrap(model).load_state_dict(weights)
            st = ck.load_state()
            optimizer.load_state_dict(st["optimizer"])
            schedule.load_state_dict(st["schedule"])
            if st.get("scaler"):
                scaler.load_state_dict(st["scaler"])
            if ema is not None and st.get("ema") is not None:
                ema.load_state_dict(st["ema"])
            epoch, step, step_in_epoch = int(st["epoch"]), int(st["step"]), int(st["step_in_epoch"])
            history = list(st["history"])
            best_acc = float(st["best_acc"])
            train_seconds = float(st["train_seconds"])
            acc_state = dict(st["accum"])
            nonfinite_run = int(st.get("nonfinite_run", 0))
            if st.get("threads") and not recipe.threads:
                torch.set_num_threads(int(st["threads"]))  # bit-exactness needs the same thread count
            set_rng_state(st["rng"])
            if d.rank > 0:  # only rank 0's RNG is saved; other ranks continue from a derived seed
                torch.manual_seed(recipe.seed * 1_000_003 + d.rank * 7919 + step)
            log(f"resumed {run} from {ck.manifest.name}: epoch {epoch + 1}, step {step}")

    wrapper = _Wrapper(model, d, recipe.compile)

    def save(stop_reason: str = "") -> None:
        if not d.is_main:
            return
        state = {
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "ema": ema.state_dict() if ema is not None else None,
            "rng": rng_state(),
            "epoch": epoch,
            "step": step,
            "step_in_epoch": step_in_epoch,
            "history": history,
            "best_acc": best_acc,
            "train_seconds": train_seconds,
            "accum": acc_state,
            "nonfinite_run": nonfinite_run,
            "threads": torch.get_num_threads(),
            # The data order is a pure function of these, recorded so the run directory says so.
            "data_order": {"seed": recipe.seed, "epoch": epoch, "batches_consumed": step_in_epoch},
        }
        ckpts.save(
            step,
            epoch,
            unwrap(model).state_dict(),
            state,
            meta,
            info={"stop": stop_reason} if stop_reason else None,
            keep_last=recipe.keep_last,
        )

    status, stop_signal = "finished", None
    t_run, step_run0 = time.perf_counter(), step  # this process's pace, for the whole run's ETA
    set_train_mode(model)
    with _StopRequest() as stop:
        while epoch < epochs and step < total_steps:
            if hooks["epoch_start"] is not None:
                hooks["epoch_start"](model, epoch)  # may unfreeze parts (also at a resumed epoch)
            train_model = wrapper.current()
            data.train.set_epoch(epoch)
            n_batches = min(steps_per_epoch, total_steps - (step - step_in_epoch))
            bar = Progress(n_batches, f"epoch {epoch + 1}/{epochs}", recipe.progress and d.is_main, start=step_in_epoch)
            t_epoch = time.perf_counter()
            loss_t = torch.zeros((), dtype=torch.float64, device=dev)
            correct_t = torch.zeros((), dtype=torch.float64, device=dev)
            seen_t = torch.zeros((), dtype=torch.float64, device=dev)
            stopped = False
            for x, y in data.train.iter_from(step_in_epoch):
                if step >= total_steps:
                    break
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                schedule.apply(optimizer, step)
                with autocast(recipe.precision, dev):
                    out = train_model(x)
                loss, logits = loss_fn(out, y, recipe)
                finite = bool(torch.isfinite(loss))
                nonfinite, stop_now = ddp.any_flag(d, not finite, stop.signal is not None)
                optimizer.zero_grad(set_to_none=True)
                if nonfinite:
                    nonfinite_run += 1
                    log(f"warning: non-finite loss at step {step} ({nonfinite_run} in a row); step skipped")
                    if nonfinite_run >= recipe.max_nonfinite:
                        raise NonFiniteLossError(_nonfinite_message(nonfinite_run, epoch, step, recipe, ckpts))
                else:
                    nonfinite_run = 0
                    scaler.scale(loss).backward()
                    grad_ok = True
                    if recipe.grad_clip > 0 or not scaler.is_enabled():
                        scaler.unscale_(optimizer)
                        # The norm doubles as the finiteness check outside fp16 (where the scaler does it):
                        # a step with inf/NaN gradients would write non-finite weights.
                        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip or math.inf)
                        # Under DDP the gradients are already all-reduced, so every rank agrees.
                        grad_ok = scaler.is_enabled() or bool(torch.isfinite(norm))
                    if grad_ok:
                        scaler.step(optimizer)  # fp16: skipped (and the scale lowered) when gradients overflowed
                        scaler.update()
                        if ema is not None:
                            ema.update(model)
                    else:
                        log(f"warning: non-finite gradient at step {step}; step skipped")
                    with torch.no_grad():
                        loss_t += loss.detach().double() * y.numel()
                        correct_t += (logits.argmax(1) == y).sum()
                        seen_t += y.numel()
                step += 1
                step_in_epoch += 1
                bar.update(
                    x.shape[0] * d.world_size,
                    float(loss_t / seen_t.clamp(min=1)) if bar.tty else None,
                    float(correct_t / seen_t.clamp(min=1)) if bar.tty else None,
                )
                if stop_now:
                    stopped = True
                    break
                if recipe.checkpoint_every and step % recipe.checkpoint_every == 0 and step_in_epoch < n_batches:
                    train_seconds += time.perf_counter() - t_epoch
                    t_epoch = time.perf_counter()
                    acc_state = _merge(acc_state, loss_t, correct_t, seen_t)
                    loss_t.zero_(), correct_t.zero_(), seen_t.zero_()
                    save()
            train_seconds += time.perf_counter() - t_epoch
            acc_state = _merge(acc_state, loss_t, correct_t, seen_t)
            if stopped:
                save(stop_reason=signal.Signals(stop.signal or signal.SIGTERM).name if stop.signal else "peer")
                bar.close()
                sig = stop.signal
                log(
                    f"stopped by {signal.Signals(sig).name if sig else 'a peer process'} at step {step}; "
                    f"continue with: cnnlab train --resume {run}"
                )
                status, stop_signal = "interrupted", sig
                break
            # -- epoch end
            tot = ddp.sum_tensor(
                d,
                torch.tensor(
                    [acc_state["loss"], acc_state["correct"], acc_state["seen"]], dtype=torch.float64, device=dev
                ),
            )
            seen = max(1.0, float(tot[2]))
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": step,
                "lr": schedule.r.lr * schedule.factor(max(0, step - 1)),
                "train_loss": float(tot[0]) / seen,
                "train_acc": float(tot[1]) / seen,
                "val_loss": None,
                "val_acc": None,
            }
            rate = bar.close(row["train_loss"], row["train_acc"])
            eval_model = model
            if ema is not None:
                eval_model = _ema_model(model, ema)
            if data.val is not None:
                v = evaluate_loader(eval_model, data.val, recipe, dev, d)
                row["val_loss"], row["val_acc"] = v["loss"], v["top1"]
                set_train_mode(model)
            row["seconds"] = round(train_seconds, 3)
            row["img_per_s"] = round(rate, 1)
            history.append(row)
            schedule.epoch_end(row["val_acc"])
            metric = row["val_acc"] if row["val_acc"] is not None else row["train_acc"]
            improved = metric > best_acc
            if improved:
                best_acc = metric
            log(
                f"epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.4f}  train acc {100 * row['train_acc']:.2f}%"
                + (f"  val acc {100 * row['val_acc']:.2f}%" if row["val_acc"] is not None else "")
                + f"  lr {row['lr']:.3g}  {rate:,.0f} img/s"
                + _run_eta(time.perf_counter() - t_run, step - step_run0, total_steps - step)
            )
            epoch += 1
            step_in_epoch = 0
            acc_state = {"loss": 0.0, "correct": 0.0, "seen": 0.0}
            if d.is_main:
                # Metrics first: the smallest file, so a disk that fills up during the checkpoint keeps the epoch's
                # row (a resume from the previous checkpoint recomputes the same row). The plot waits for the end:
                # drawing it costs more than a small epoch.
                write_metrics(run, history)
                if improved:
                    ckpts.save_best(step, epoch, unwrap(eval_model).state_dict(), meta, {"val_acc": metric})
                save()

    if d.is_main and recipe.plots:
        plot_curves(run, history, title=f"{meta['model']} on {data.spec}")
    if status == "interrupted":
        return Result(run, status, signal=stop_signal)

    summary = _finish(run, recipe, data, model, ema, ckpts, history, train_seconds, steps_per_epoch, d, log)
    return Result(run, status, summary)


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


def _merge(acc: dict[str, float], loss_t: torch.Tensor, correct_t: torch.Tensor, seen_t: torch.Tensor) -> dict:
    return {
        "loss": acc["loss"] + float(loss_t),
        "correct": acc["correct"] + float(correct_t),
        "seen": acc["seen"] + float(seen_t),
    }


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
    steps_per_epoch: int,
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
