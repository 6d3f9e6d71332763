"""Test-time augmentation: the one vocabulary of test-time views, for `data.views` and `cnnlab eval`/`predict`.

    mode                      the views of a batch                                         V           each view's side
    none                      the batch itself                                             1           the input's
    flip                      the batch and its mirror                                     2           the input's
    center[:S]                the central S x S crop                                       1           S
    tencrop[:S]               four corner crops and the centre crop of the batch as it     10          S
                              is, each also mirrored (Krizhevsky et al. 2012, Sec. 4.1)
    10crop                    AlexNet's test protocol for a fixed-size network: tencrop    10          the input's
                              of the input's side from the batch enlarged by 1/CROP_RATIO
    multiscale[:F1/F2/..]     the whole batch resized by each F, and mirrors (Simonyan &   2 x scales  F x the input's
                              Zisserman 2014, Sec. 3.2, dense evaluation: for networks
                              that pool globally; default MULTISCALE = 1/1.15/1.3)
    multiscale-crop[:F1/..]   the batch resized by each F >= 1 and centre-cropped back to  2 x scales  the input's
                              the input's side, and mirrors (the fixed-size stand-in for
                              multiscale; default 1.0/1.125/1.25)

S is in pixels or, with a '.', a fraction of the input side (default CROP_RATIO = 0.875).

`tta_views(x, mode)` gives the views of any mode as a list. `views(x, mode)` stacks them into (V, B, C, h, w), so
it takes every mode whose views share one size: all but multiscale. `cnnlab eval` and `predict --tta` take
EVAL_MODES, the modes whose views a trained network takes at the size it was trained on (or, for multiscale,
whole). Renamed: `views(x, "multiscale:...")` meant what is now multiscale-crop; it still does, with a
FutureWarning, since a stacked tensor cannot hold multiscale's views.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError, UnknownNameError

MODES = ("none", "flip", "center", "tencrop", "10crop", "multiscale", "multiscale-crop")
EVAL_MODES = ("none", "flip", "10crop", "multiscale")  # what `cnnlab eval` / `predict --tta` accept
CROP_RATIO = 0.875  # 224/256: the crop covers 87.5% of the resized image (the AlexNet/VGG/ResNet convention)
MULTISCALE = (1.0, 1.15, 1.3)  # multiscale's default scales
MULTISCALE_CROP = (1.0, 1.125, 1.25)  # multiscale-crop's default scales


def check_tta(mode: str) -> str:
    """`mode` if `cnnlab eval` / `predict --tta` take it; else UnknownNameError with the close matches."""
    if mode not in EVAL_MODES:
        raise UnknownNameError("TTA mode", mode, EVAL_MODES)
    return mode


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


def _factors(arg: str, default: tuple[float, ...], mode: str) -> list[float]:
    if not arg:
        return list(default)
    try:
        factors = [float(f) for f in arg.split("/")]
    except ValueError:
        raise CnnlabError(f"test-time views {mode}:{arg}: expected factors like 1.0/1.125/1.25") from None
    if mode == "multiscale-crop" and any(f < 1.0 for f in factors):
        raise CnnlabError(f"test-time views {mode}: factors must be >= 1 (each scale is cropped to the input)")
    if any(f <= 0.0 for f in factors):
        raise CnnlabError(f"test-time views {mode}:{arg}: factors must be positive")
    return factors


def _parse(mode: str) -> tuple[str, str]:
    name, _, arg = (mode or "none").partition(":")
    if name not in MODES:
        raise UnknownNameError("test-time view mode", name, MODES)
    if name == "10crop" and arg:
        raise CnnlabError(f"test-time views {mode}: 10crop takes no size (tencrop:S takes one)")
    return name, arg


def views(x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """(B, C, H, W) -> (V, B, C, h, w) views of `mode` (see the module docstring); every mode but multiscale."""
    name, arg = _parse(mode)
    if name == "multiscale":
        warnings.warn(
            "data.views: 'multiscale' is now called 'multiscale-crop' (each scale cropped back to the input "
            "size); 'multiscale' names the whole-image views of tta_views, which do not stack",
            FutureWarning,
            stacklevel=2,
        )
        name = "multiscale-crop"
    if name == "multiscale-crop":
        return torch.stack(_multiscale_crop(x, _factors(arg, MULTISCALE_CROP, name)))
    return _stacked(x, name, arg)


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The views of `mode` (see the module docstring) of a batch (B, C, H, W), as a list of (B, C, h, w)."""
    name, arg = _parse(mode)
    if name == "multiscale":
        return _multiscale(x, _factors(arg, MULTISCALE, name))
    if name == "multiscale-crop":
        return _multiscale_crop(x, _factors(arg, MULTISCALE_CROP, name))
    return list(_stacked(x, name, arg).unbind(0))


def _stacked(x: torch.Tensor, name: str, arg: str) -> torch.Tensor:
    """(V, B, C, h, w): the views of the modes that crop or mirror (none, flip, center, tencrop, 10crop)."""
    h, w = x.shape[-2:]
    if name == "none":
        return x.unsqueeze(0)
    if name == "flip":
        return torch.stack([x, x.flip(-1)])
    if name == "10crop":
        if h != w:
            raise CnnlabError(f"10crop TTA needs square images, got {h}x{w}")
        big = round(h / CROP_RATIO)
        xb = F.interpolate(x, size=(big, big), mode="bilinear", align_corners=False, antialias=False)
        return _stacked(xb, "tencrop", str(h))
    s = _size(arg or str(CROP_RATIO), min(h, w), name)
    ct, cl = (h - s) // 2, (w - s) // 2
    center = _crop(x, ct, cl, s)
    if name == "center":
        return center.unsqueeze(0)
    crops = [_crop(x, 0, 0, s), _crop(x, 0, w - s, s), _crop(x, h - s, 0, s), _crop(x, h - s, w - s, s), center]
    return torch.stack(crops + [c.flip(-1) for c in crops])


def _multiscale(x: torch.Tensor, factors: list[float]) -> list[torch.Tensor]:
    # Whole images at each scale, so the views differ in size (a list, not a stack).
    out = []
    for s in factors:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        out += [xs, xs.flip(-1)]
    return out


def _multiscale_crop(x: torch.Tensor, factors: list[float]) -> list[torch.Tensor]:
    h, w = x.shape[-2:]
    out = []
    for f in factors:
        nh, nw = round(h * f), round(w * f)
        y = x if (nh, nw) == (h, w) else F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        y = y[..., (nh - h) // 2 : (nh - h) // 2 + h, (nw - w) // 2 : (nw - w) // 2 + w]
        out += [y, y.flip(-1)]
    return out
