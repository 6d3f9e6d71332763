"""`shapes`: the embedded dataset, drawn procedurally (no files, no network).

Every image is one shape on a textured background. The class is the shape; colour, size, position, rotation,
background texture and noise are nuisance variables drawn independently of the class. Because the shape's
colour and the sign of its contrast against the background are random, a linear model on raw pixels cannot
template-match it (the tests bound its accuracy), while a convnet, which sees edges and their arrangement,
learns it in a few epochs.

Drawing is vectorized: a block of images is rendered at once from signed-distance functions evaluated on a
broadcast coordinate grid; the only Python loop runs over classes (12), never over images. Parameters come
from a torch.Generator seeded by (seed, split, block index), so the first N images of a split are the same
whatever the total count, and the same seed gives bit-identical images (elementwise float32 ops only; no
reductions whose order could depend on the thread count).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from cnnlab.data.cache import human_bytes
from cnnlab.errors import CnnlabError

# Bump when drawing changes: it is part of the cache key, so old caches are not reused.
VERSION = 3

CLASSES: tuple[str, ...] = (
    "circle",
    "ring",
    "square",
    "frame",
    "triangle",
    "star",
    "plus",
    "crescent",
    "ellipse",
    "dumbbell",
    # Past the default 10: at 24-32 px a heart is a blob easily taken for a circle or a square, and a
    # half-disc for a triangle; at 64 px and up they are distinct.
    "semicircle",
    "heart",
)
DEFAULT_CLASSES = 10

_SPLIT_STREAM = {"train": 1, "test": 2}

# Drawing holds about twenty float32 (block, size, size) planes: ~0.5 GB at 512 px, ~2 GB at 1024 px.
MIN_SIZE, MAX_SIZE = 8, 512
MAX_IMAGES = 10_000_000  # per split; a procedural toy set larger than ImageNet-1k x 8 is a typo
MAX_SEED = 9_999_999  # block seeds, (seed * 1_000_003 + stream) * 1_000_003 + block, must fit torch's 64 bits


def image_bytes(n: int, size: int) -> int:
    """Bytes of `n` cached uint8 RGB images of `size` x `size` (labels are 8 bytes each more)."""
    return n * (3 * size * size + 8)


def check_options(opts: dict) -> None:
    """Refuse options that cannot be drawn, before anything is allocated (one line each)."""
    size, train, test = int(opts["size"]), int(opts["train"]), int(opts["test"])
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise CnnlabError(f"shapes: size must be {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")
    for split, n, least in (("train", train, 1), ("test", test, 0)):
        if not least <= n <= MAX_IMAGES:
            need = f" ({human_bytes(image_bytes(n, size))} of cache)" if n > MAX_IMAGES else ""
            raise CnnlabError(f"shapes: {split} must be {least}..{MAX_IMAGES:,} images, got {n}{need}")
    if not 1 <= int(opts["classes"]) <= len(CLASSES):
        raise CnnlabError(f"shapes: classes must be in 1..{len(CLASSES)}, got {opts['classes']}")
    if not 0.0 <= float(opts["difficulty"]) <= 1.0:
        raise CnnlabError(f"shapes: difficulty must be in [0, 1], got {opts['difficulty']}")
    if not 0 <= int(opts["seed"]) <= MAX_SEED:
        raise CnnlabError(f"shapes: seed must be in 0..{MAX_SEED}, got {opts['seed']}")


def _box(u: torch.Tensor, v: torch.Tensor, a: float, b: float) -> torch.Tensor:
    # Chebyshev-style box distance: exact on the axes, a slight overestimate near corners (fine for edges).
    return torch.maximum(u.abs() - a, v.abs() - b)


def _polygon(r: torch.Tensor, theta: torch.Tensor, n: int, radius: float) -> torch.Tensor:
    # Distance to the nearest edge line of a regular n-gon with circumradius `radius` (exact inside).
    sector = 2 * math.pi / n
    phi = torch.remainder(theta + sector / 2, sector) - sector / 2
    return r * torch.cos(phi) - radius * math.cos(math.pi / n)


def _sdf(cls: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Approximate signed distance (negative inside) in shape units; the shape spans about [-1, 1]."""
    r = torch.sqrt(u * u + v * v)
    if cls == "circle":
        return r - 0.9
    if cls == "ring":
        return (r - 0.75).abs() - 0.22
    if cls == "square":
        return _box(u, v, 0.75, 0.75)
    if cls == "frame":
        return (torch.maximum(u.abs(), v.abs()) - 0.62).abs() - 0.2
    theta = torch.atan2(v, u)
    if cls == "triangle":
        return _polygon(r, theta - math.pi / 2, 3, 1.1)
    if cls == "star":
        sector = 2 * math.pi / 5
        phi = (torch.remainder(theta - math.pi / 2 + sector / 2, sector) - sector / 2).abs()
        boundary = 1.05 - (1.05 - 0.42) * phi / (sector / 2)  # tip at phi = 0, notch at the sector edge
        return (r - boundary) * 0.6
    if cls == "plus":
        return torch.minimum(_box(u, v, 0.95, 0.25), _box(u, v, 0.25, 0.95))
    if cls == "crescent":
        return torch.maximum(r - 0.95, 0.75 - torch.sqrt((u - 0.45) ** 2 + v * v))
    if cls == "heart":
        # The classic implicit heart (x^2 + y^2 - 1)^3 - x^2 y^3 = 0; distance ~ f / |grad f|.
        x, y = u * 1.25, -v * 1.25 + 0.15
        q = x * x + y * y - 1
        f = q**3 - x * x * y**3
        fx = 6 * x * q * q - 2 * x * y**3
        fy = 6 * y * q * q - 3 * x * x * y * y
        return f / (torch.sqrt(fx * fx + fy * fy) + 1e-3) / 1.25
    if cls == "ellipse":
        a, b = 1.0, 0.42
        return (torch.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * b
    if cls == "semicircle":
        return torch.maximum(r - 0.95, -v - 0.1)
    if cls == "dumbbell":
        return torch.minimum(torch.sqrt((u - 0.55) ** 2 + v * v), torch.sqrt((u + 0.55) ** 2 + v * v)) - 0.4
    raise KeyError(cls)


def _block_size(size: int) -> int:
    # Images per parameter block: large at 32 px to amortize Python overhead, small at 224 px to bound memory.
    return int(max(16, min(256, 2**18 // (size * size))))


def _uniform(g: torch.Generator, n: int, lo: float, hi: float, *rest: int) -> torch.Tensor:
    return torch.rand(n, *rest, generator=g) * (hi - lo) + lo


def render_block(
    n: int, size: int, num_classes: int, difficulty: float, g: torch.Generator, offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `n` images (uint8, (n, 3, size, size)) and labels (int64) from generator `g`."""
    d = float(difficulty)
    # Class-balanced over consecutive blocks (the block index rotates the remainder), shuffled within a block.
    y = (torch.arange(n) + offset) % num_classes
    y = y[torch.randperm(n, generator=g)]
    # Nuisance parameters (all in [-1, 1] image units; scale is the shape's half-extent).
    scale = _uniform(g, n, 0.62 - 0.22 * d, 0.86 - 0.1 * d)
    room = (1 - scale).clamp(min=0.05)
    cx = (torch.rand(n, generator=g) * 2 - 1) * room
    cy = (torch.rand(n, generator=g) * 2 - 1) * room
    rot = torch.rand(n, generator=g) * 2 * math.pi
    aspect = torch.exp(_uniform(g, n, -0.1, 0.1) * (0.5 + d))  # mild anisotropic stretch
    bg = torch.rand(n, 3, generator=g)
    fg = torch.rand(n, 3, generator=g)
    # Keep the shape visible: if its colour is too close to the background, push each channel away.
    too_close = (fg - bg).norm(dim=1, keepdim=True) < 0.45
    pushed = torch.where(bg > 0.5, bg - 0.5, bg + 0.5)
    fg = torch.where(too_close, pushed, fg)
    # Background texture: oriented sinusoidal stripes plus a linear gradient, each with a random colour.
    tex_amp = _uniform(g, n, 0.0, 0.12 + 0.25 * d)
    tex_freq = _uniform(g, n, 1.0, 2.0 + 4.0 * d)
    tex_dir = torch.rand(n, generator=g) * 2 * math.pi
    tex_phase = torch.rand(n, generator=g) * 2 * math.pi
    tex_col = torch.rand(n, 3, generator=g) * 2 - 1
    grad_dir = torch.rand(n, generator=g) * 2 * math.pi
    grad_col = (torch.rand(n, 3, generator=g) * 2 - 1) * (0.1 + 0.2 * d)
    shade = (torch.rand(n, 3, generator=g) * 2 - 1) * (0.05 + 0.15 * d)  # shading across the shape
    noise_sigma = 0.02 + 0.06 * d
    noise = torch.randn(n, 3, size, size, generator=g)

    # Coordinate grid at pixel centres, broadcast to (n, H, W).
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = t.view(1, size, 1), t.view(1, 1, size)
    col = lambda p: p.view(n, 1, 1)  # noqa: E731  (per-image scalar broadcast over the grid)
    dx, dy = xx - col(cx), yy - col(cy)
    cos, sin = col(torch.cos(rot)), col(torch.sin(rot))
    u = (dx * cos + dy * sin) / col(scale * aspect)
    v = (-dx * sin + dy * cos) / col(scale / aspect)

    # Signed distance, one class at a time over the images of that class.
    dist = torch.empty(n, size, size)
    for k in range(num_classes):
        idx = (y == k).nonzero().squeeze(1)
        if idx.numel():
            dist[idx] = _sdf(CLASSES[k], u[idx], v[idx])
    # Distance in pixels -> anti-aliased coverage in [0, 1].
    px_per_unit = col(scale) * (size / 2)
    alpha = (0.5 - dist * px_per_unit).clamp(0, 1).unsqueeze(1)  # (n, 1, H, W)

    ang = tex_dir.view(n, 1, 1)
    stripes = torch.sin(math.pi * col(tex_freq) * (xx * torch.cos(ang) + yy * torch.sin(ang)) + col(tex_phase))
    gang = grad_dir.view(n, 1, 1)
    ramp = xx * torch.cos(gang) + yy * torch.sin(gang)
    background = (
        bg.view(n, 3, 1, 1)
        + (tex_amp.view(n, 1) * tex_col).view(n, 3, 1, 1) * stripes.unsqueeze(1)
        + grad_col.view(n, 3, 1, 1) * ramp.unsqueeze(1)
    )
    foreground = fg.view(n, 3, 1, 1) + shade.view(n, 3, 1, 1) * u.clamp(-1, 1).unsqueeze(1)
    img = background + alpha * (foreground - background) + noise_sigma * noise
    img = (img.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8)
    return img, y.to(torch.int64)


def generate(
    n: int,
    size: int = 32,
    *,
    split: str = "train",
    seed: int = 0,
    difficulty: float = 0.3,
    num_classes: int = DEFAULT_CLASSES,
    out: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (uint8 (n, 3, size, size)) and labels of the `split` stream.

    `out`, when given, is filled in place (e.g. a memory-mapped cache file) so memory stays bounded.
    `progress(k)` is called as each block of k images is done (at 224 px an image takes about 15 ms).
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"shapes: classes must be in 1..{len(CLASSES)}, got {num_classes}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"shapes: difficulty must be in [0, 1], got {difficulty}")
    if size < 8:
        raise ValueError(f"shapes: size must be at least 8 pixels, got {size}")
    x = out if out is not None else np.empty((n, 3, size, size), np.uint8)
    y = np.empty(n, np.int64)
    block = _block_size(size)
    stream = _SPLIT_STREAM[split]
    for b, start in enumerate(range(0, n, block)):
        g = torch.Generator().manual_seed((seed * 1_000_003 + stream) * 1_000_003 + b)
        m = min(block, n - start)
        # Always draw a full block so the first images do not depend on n.
        img, lab = render_block(block, size, num_classes, difficulty, g, offset=b * block)
        x[start : start + m] = img[:m].numpy()
        y[start : start + m] = lab[:m].numpy()
        if progress is not None:
            progress(m)
    return x, y
