"""The clocks of `data-pipeline`: a JPEG folder through torchvision and a DataLoader, cnnlab's uint8 cache through
cnnlab.data.Loader, and one training step cut into stages.

Each stage's clock is `time.perf_counter` around it, on the main process. `read` is reading and decoding an image
(JPEG: PIL's open + convert inside the dataset; cache: the loader's gather of uint8 rows, and on a GPU its uint8
copy); `augment` is the transforms (JPEG: RandomCrop, flip, ToTensor, Normalize per image; cache: the batched
augmentation and normalization); `other` is the rest of the time blocked in `next()` (collation, the sampler and,
with workers, waiting for a worker's batch: its reading and augmenting happen in the worker, off this clock);
`copy` is `.to(device, non_blocking=True)`; then `forward` (and the loss), `backward`, `optimizer` (step and
zero_grad). On CUDA every stage ends with torch.cuda.synchronize(), so each clock holds its own kernels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError

STAGES = ("read", "augment", "other", "copy", "forward", "backward", "optimizer")
DATA_STAGES = ("read", "augment", "other", "copy")  # what "waiting on data" counts
JPEG_QUALITY = 90  # a common export quality; decode time hardly depends on it at 32 px


def torchvision() -> Any:
    try:
        import torchvision as tv
    except ImportError:
        raise CnnlabError("the JPEG pipeline of data-pipeline needs torchvision: pip install torchvision") from None
    return tv


def write_jpegs(x: torch.Tensor, y: torch.Tensor, classes: list[str], root: Path) -> int:
    """uint8 (N, 3, H, W) images as root/CLASS/i.jpg (ImageFolder's layout); returns the bytes written."""
    from PIL import Image

    safe = ["".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in c) for c in classes]
    names = [f"{k:03d}-{n}" for k, n in enumerate(safe)]  # unique, and sorted as the labels are (ImageFolder sorts)
    for n in names:
        (root / n).mkdir(parents=True, exist_ok=True)
    total = 0
    for i, (img, label) in enumerate(zip(x.permute(0, 2, 3, 1).numpy(), y.tolist())):
        path = root / names[label] / f"{i}.jpg"
        Image.fromarray(img).save(path, "JPEG", quality=JPEG_QUALITY)
        total += path.stat().st_size
    return total


class TimedFolder(torch.utils.data.Dataset):
    """An ImageFolder whose reading+decoding and transforms are timed apart, per image, in this process (so only a
    0-worker loader's clocks see them; a worker's copy keeps its own)."""

    def __init__(self, root: Path, side: int, mean: list[float], std: list[float]):
        tv = torchvision()
        t = tv.transforms
        self.folder = tv.datasets.ImageFolder(str(root))
        # The same augmentation as cnnlab's "flip,crop:4": zero padding of 4, a random crop back, a coin flip.
        self.transform = t.Compose([t.RandomCrop(side, padding=4), t.RandomHorizontalFlip(), t.ToTensor(),
                                    t.Normalize(mean, std)])  # fmt: skip
        self.read = self.augment = 0.0

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.folder.samples[i]
        t0 = time.perf_counter()
        img = self.folder.loader(path)  # open, read, decode, convert to RGB
        t1 = time.perf_counter()
        x = self.transform(img)
        self.read += t1 - t0
        self.augment += time.perf_counter() - t1
        return x, label


class TimedAugment:
    """cnnlab.data.Loader's Augment with `apply` timed (the loader itself runs unchanged)."""

    def __init__(self, inner: Any, sync: Callable[[], None]):
        self.inner, self.sync = inner, sync
        self.read, self.augment = 0.0, 0.0  # read stays 0: the gather is what the loader's wait leaves over

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.sample(*args, **kwargs)

    def apply(self, x: torch.Tensor, params: Any, **kwargs: Any) -> torch.Tensor:
        self.sync()  # the gather (and its uint8 copy to a GPU) belongs to `read`
        t0 = time.perf_counter()
        out = self.inner.apply(x, params, **kwargs)
        self.sync()
        self.augment += time.perf_counter() - t0
        return out


def syncer(device: torch.device) -> Callable[[], None]:
    """Wait for the device's queued kernels, so that a stage's clock holds its own work (a no-op on a CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def ignore_sigint(worker_id: int) -> None:
    """A DataLoader worker's init: Ctrl-C reaches the whole process group, and a worker that dies of it fails the
    main process; ignoring it lets the main process finish the repeat and stop gracefully (StopRequest)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def time_steps(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    timed: Any,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    device: torch.device,
    warmup: int,
    steps: int,
    gather_is_read: bool = False,
) -> dict[str, float]:
    """Milliseconds per step in each stage over `steps` training steps after `warmup` (not counted: worker start-up,
    allocator and kernel warm-up). `timed` carries the in-loader clocks (`read`, `augment`, seconds, cumulative);
    with `gather_is_read` the loader's wait less its augmentation is `read` (the cache has no decode)."""
    sync, it = syncer(device), iter(batches)
    total = dict.fromkeys(STAGES, 0.0)
    model.train()
    for k in range(warmup + steps):
        if k == warmup:
            total, timed.read, timed.augment = dict.fromkeys(STAGES, 0.0), 0.0, 0.0
        r0, a0 = timed.read, timed.augment
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        sync()
        t2 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        sync()
        t3 = time.perf_counter()
        loss.backward()
        sync()
        t4 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t5 = time.perf_counter()
        read, aug = timed.read - r0, timed.augment - a0
        if gather_is_read:
            read = t1 - t0 - aug
        for name, dt in zip(STAGES, (read, aug, t1 - t0 - read - aug, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            total[name] += dt
    del it  # a DataLoader's workers shut down here, not inside the next cell's clock
    return {name: 1000 * s / steps for name, s in total.items()}


def share_on_data(ms: dict[str, float]) -> float:
    """The share of a step's time that waits on data (the loader's wait plus the host-to-device copy)."""
    return sum(ms[s] for s in DATA_STAGES) / sum(ms[s] for s in STAGES)
