"""TensorBoard event files for a training run (`--tensorboard`, recipe field `tensorboard`): RUN_DIR/tensorboard/.

What is written, all against the global optimizer step (the x-axis metrics.csv's `step` column uses, so per-step
and per-epoch curves overlay):

- `train/loss`, `train/lr`: every optimizer step (the loss of the global batch, the base learning rate). The
  losses wait on the device and are written every FLUSH_EVERY steps and at each epoch end, so the loop keeps
  its one sync per epoch instead of one per step (a GPU run keeps its pace);
- `epoch/<column>`: every number of metrics.csv's row (train_loss, train_acc, val_loss, val_acc, lr, img_per_s,
  seconds, and clean_train_* or the emulation counters when the run has them), at the epoch's last step;
- `train/batch`: the first augmented training batch (at most GRID_IMAGES images), denormalized, at step 0;
- `<split>/confusion`: the confusion matrix of the tested checkpoint at the end, drawn by
  cnnlab.train.evaluate.plot_confusion (the figure `cnnlab eval` writes).

Only rank 0 writes. A resumed run appends a new event file to the same directory with `purge_step` set to the
first step it will log, so events written after the checkpoint it restarts from (a killed run) are hidden from
TensorBoard and no step appears twice. The `tensorboard` package is optional (`pip install 'cnnlab[tensorboard]'`).
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError

FLUSH_EVERY = 50  # steps between writes of the buffered per-step losses (one device sync each)
GRID_IMAGES = 64  # an 8 x 8 grid: a 512-image batch of 224 px images would be a 5,000 px square
SUBDIR = "tensorboard"
# metrics.csv columns that are the x-axis, not a curve
_NOT_CURVES = ("epoch", "step")


def require() -> None:
    """Fail with one line when the tensorboard package is missing: called before the run directory is touched."""
    try:
        importlib.import_module("tensorboard")
        importlib.import_module("torch.utils.tensorboard")
    except ImportError:
        raise CnnlabError("tensorboard=true needs the tensorboard package: pip install 'cnnlab[tensorboard]'") from None


class TensorBoardLog:
    """The event files of one run; every rank holds one (the per-step losses are averaged over the ranks when
    they are written, so every rank must flush at the same steps), and only rank 0's has a writer."""

    def __init__(self, run: Path, d: Any, step: int) -> None:
        self.d = d
        self.writer = None
        if d.is_main:
            from torch.utils.tensorboard import SummaryWriter

            # The first step this process logs is step + 1 (the batch grid of a run from scratch: 0); events at
            # or after it come from a run killed after its last checkpoint and are purged when read.
            self.writer = SummaryWriter(str(run / SUBDIR), purge_step=step + 1 if step else 0)
        self._steps: list[int] = []
        self._lrs: list[float] = []
        self._losses: list[torch.Tensor] = []
        # A run that had already finished (summary.json is written just before the confusion image) and is resumed
        # again trains nothing and re-tests: its image at the same last step is already in the log.
        self._start, self._had_finished = step, (run / "summary.json").is_file()

    def step(self, step: int, loss: torch.Tensor, lr: float) -> None:
        """Record one finished optimizer step (`step` counts the steps done, as metrics.csv's column does)."""
        self._steps.append(step)
        self._lrs.append(lr)
        self._losses.append(loss.detach().float().reshape(()))
        if len(self._steps) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write the buffered steps; a collective under DDP, so every rank calls it at the same step."""
        if self._steps:
            from cnnlab.train import ddp

            # The ranks' batches are equal slices of the global batch: their mean is the global batch's loss.
            losses = ddp.sum_tensor(self.d, torch.stack(self._losses).double()) / self.d.world_size
            if self.writer is not None:
                for step, lr, loss in zip(self._steps, self._lrs, losses.tolist()):
                    self.writer.add_scalar("train/loss", loss, step)
                    self.writer.add_scalar("train/lr", lr, step)
            self._steps, self._lrs, self._losses = [], [], []
        if self.writer is not None:
            self.writer.flush()

    def epoch(self, row: dict[str, Any]) -> None:
        """metrics.csv's row of the epoch just ended (every rank calls it: it flushes the steps first)."""
        self.flush()
        if self.writer is None:
            return
        for key, value in row.items():
            if key not in _NOT_CURVES and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"epoch/{key}", value, row["step"])
        self.writer.flush()

    def batch_grid(self, loader: Any, mean: list[float], std: list[float]) -> None:
        """The first augmented batch of epoch 0 as the model sees it, denormalized to [0, 1] (rank 0's share of
        it under DDP). The loader's batches are a pure function of (seed, epoch, batch): drawing it here changes
        nothing the run will draw."""
        if self.writer is None:
            return
        loader.set_epoch(0)
        x, _ = next(iter(loader.iter_from(0)))
        x = x[:GRID_IMAGES].detach().float().cpu()
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        x = (x * s + m).clamp(0, 1)
        if x.shape[1] not in (1, 3):  # an image summary is gray or RGB: show the first channel of other data
            x = x[:, :1]
        self.writer.add_images("train/batch", x, 0)
        self.writer.flush()

    def confusion(self, run: Path, data: Any, recipe: Any, model: torch.nn.Module, step: int) -> None:
        """The confusion matrix of the weights the run tested (its best checkpoint, else `model`'s final weights)
        on its held-out split.

        One more pass over that split on rank 0: the loop's own test pass keeps only sums (evaluate_loader). It
        runs the trained module itself (a custom `train(model=...)` network included) at the run's precision and
        memory layout, so its top-1 is summary.json's test_top1; the matrix and figure are cnnlab.train.evaluate's
        (metrics, plot_confusion), as `cnnlab eval` draws them.
        """
        if self.writer is None or data.test is None or (self._had_finished and step == self._start):
            return
        import copy

        from matplotlib.image import imread

        from cnnlab.data import Loader
        from cnnlab.train.checkpoint import CheckpointDir
        from cnnlab.train.evaluate import metrics, plot_confusion
        from cnnlab.train.numerics import autocast, logits_of, to_device, unwrap, use_channels_last

        device = self.d.device
        net = copy.deepcopy(unwrap(model))  # the live model keeps its weights (a caller may use them after train)
        best = CheckpointDir(run / "checkpoints", log=lambda s: None).best()
        if best is not None:
            net.load_state_dict(best.load_weights()[0])
        net.eval()
        channels_last = use_channels_last(recipe, device)
        # The split's own Dataset (the loop's test loader holds it), unsharded: rank 0 scores all of it.
        loader = Loader(data.test.ds, batch_size=recipe.eval_batch_size, augment="none", shuffle=False, device=device)
        probs, ys = [], []
        with torch.no_grad():
            for x, y in loader:
                x, y = to_device(x, y, device, channels_last)
                with autocast(recipe.precision, device):
                    logits = logits_of(net(x)).float()
                probs.append(logits.softmax(1).cpu())
                ys.append(y.cpu())
        report = metrics(torch.cat(probs), torch.cat(ys), list(data.classes))
        name = getattr(net, "model_name", "") or recipe.model
        report.update(data=data.spec, split=data.test_split, tta="none", classes=list(data.classes),
                      members=[{"model": name}])  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_confusion(report, Path(tmp) / "confusion.png")
            image = imread(png)[:, :, :3]  # (H, W, RGBA) floats in [0, 1]; the alpha is opaque
        self.writer.add_image(f"{data.test_split}/confusion", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        """Close the writer; steps not yet flushed are dropped (a failed run: its resume redoes them)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def open_log(recipe: Any, run: Path, data: Any, d: Any, step: int) -> TensorBoardLog | None:
    """The run's TensorBoardLog (None when `recipe.tensorboard` is off); a run from step 0 logs its batch grid."""
    if not recipe.tensorboard:
        return None
    require()
    tb = TensorBoardLog(run, d, step)
    if step == 0:
        tb.batch_grid(data.train, data.mean, data.std)
    return tb
