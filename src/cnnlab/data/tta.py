"""Test-time views: one batch in, a stacked (V, B, C, H, W) tensor of views out, for the evaluator to average.

    none                 the batch itself (V = 1)
    flip                 the batch and its mirror (V = 2)
    center:S             the central S x S crop (V = 1)
    tencrop:S            four corner crops and the centre crop, each also mirrored (V = 10; AlexNet, Sec. 4.1)
    multiscale:F1/F2/..  resize to F x the input side, centre crop back to the input size, plus mirrors
                         (V = 2 x scales; the fixed-size stand-in for the ResNet paper's fully convolutional
                         multi-scale testing: views must stack, so each scale is cropped to one size)

S is in pixels or, with a '.', a fraction of the input side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError, UnknownNameError

MODES = ("none", "flip", "center", "tencrop", "multiscale")


def _size(arg: str, side: int, mode: str) -> int:
    try:
        v = float(arg)
    except ValueError:
        raise CnnlabError(f"test-time views {mode}:{arg}: '{arg}' is not a number") from None
    s = round(v * side) if "." in arg else int(v)
    if not 1 <= s <= side:
        raise CnnlabError(f"test-time views {mode}:{arg}: crop {s} must be in 1..{side}")
    return s


def _crop(x: torch.Tensor, top: int, left: int, s: int) -> torch.Tensor:
    return x[..., top : top + s, left : left + s]


def views(x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """(B, C, H, W) -> (V, B, C, h, w) views of `mode` (see the module docstring)."""
    name, _, arg = (mode or "none").partition(":")
    if name not in MODES:
        raise UnknownNameError("test-time view mode", name, MODES)
    h, w = x.shape[-2:]
    if name == "none":
        return x.unsqueeze(0)
    if name == "flip":
        return torch.stack([x, x.flip(-1)])
    if name in ("center", "tencrop"):
        s = _size(arg or "0.875", min(h, w), name)
        ct, cl = (h - s) // 2, (w - s) // 2
        center = _crop(x, ct, cl, s)
        if name == "center":
            return center.unsqueeze(0)
        crops = [_crop(x, 0, 0, s), _crop(x, 0, w - s, s), _crop(x, h - s, 0, s), _crop(x, h - s, w - s, s), center]
        return torch.stack(crops + [c.flip(-1) for c in crops])
    # multiscale
    try:
        factors = [float(f) for f in (arg or "1.0/1.125/1.25").split("/")]
    except ValueError:
        raise CnnlabError(f"test-time views multiscale:{arg}: expected factors like 1.0/1.125/1.25") from None
    if any(f < 1.0 for f in factors):
        raise CnnlabError("test-time views multiscale: factors must be >= 1 (each scale is cropped to the input)")
    out = []
    for f in factors:
        nh, nw = round(h * f), round(w * f)
        y = x if (nh, nw) == (h, w) else F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        y = y[..., (nh - h) // 2 : (nh - h) // 2 + h, (nw - w) // 2 : (nw - w) // 2 + w]
        out += [y, y.flip(-1)]
    return torch.stack(out)
