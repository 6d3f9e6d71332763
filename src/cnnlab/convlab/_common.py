"""Argument checking shared by every algorithm: one place that turns F.conv2d's arguments into a geometry.

Every algorithm accepts exactly what `torch.nn.functional.conv2d` accepts (int or pair stride/dilation,
int/pair/"same"/"valid" padding, unbatched 3-D input) and rejects the rest with a message naming the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cnnlab.errors import CnnlabError

IntOrPair = int | Sequence[int]
Padding = int | Sequence[int] | str


class ConvArgumentError(CnnlabError, ValueError):
    """Bad arguments to a convlab convolution (shape, groups, dtype, or a configuration an algorithm lacks)."""


def _pair(value: IntOrPair, name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ConvArgumentError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return value, value
    try:
        items = tuple(value)
    except TypeError:
        raise ConvArgumentError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) == 1:
        items = items * 2
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ConvArgumentError(f"{name} must be an int or a pair of ints, got {value!r}")
    return items[0], items[1]


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one convolution. Padding is explicit per side (top, bottom, left, right) because
    padding="same" with an even effective kernel pads one more on the bottom/right, as F.conv2d does."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]  # top, bottom, left, right
    dilation: tuple[int, int]
    groups: int

    @property
    def padded_hw(self) -> tuple[int, int]:
        return self.h + self.pad[0] + self.pad[1], self.w + self.pad[2] + self.pad[3]

    @property
    def eff_kernel(self) -> tuple[int, int]:
        """Extent of the dilated kernel: d(k-1)+1."""
        return self.dilation[0] * (self.kh - 1) + 1, self.dilation[1] * (self.kw - 1) + 1

    @property
    def out_hw(self) -> tuple[int, int]:
        hp, wp = self.padded_hw
        ekh, ekw = self.eff_kernel
        return (hp - ekh) // self.stride[0] + 1, (wp - ekw) // self.stride[1] + 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of direct convolution (bias not counted), the unit of every GFLOP/s figure."""
        ho, wo = self.out_hw
        return self.n * self.c_out * ho * wo * (self.c_in // self.groups) * self.kh * self.kw

    @property
    def symmetric_pad(self) -> tuple[int, int] | None:
        """(pad_h, pad_w) when top == bottom and left == right, else None."""
        t, b, left, r = self.pad
        return (t, left) if t == b and left == r else None


def geometry(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> ConvGeometry:
    """Check F.conv2d's arguments (shapes only) and return the geometry; raises ConvArgumentError."""
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    if len(input_shape) == 3:
        input_shape = (1, *input_shape)
    if len(input_shape) != 4:
        raise ConvArgumentError(f"input must be 4-D (N, C, H, W) or unbatched 3-D (C, H, W), got shape {input_shape}")
    if len(weight_shape) != 4:
        raise ConvArgumentError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {weight_shape}")
    n, c_in, h, w = input_shape
    c_out, c_per_group, kh, kw = weight_shape
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ConvArgumentError(f"groups must be a positive int, got {groups!r}")
    if c_in % groups:
        raise ConvArgumentError(f"input channels ({c_in}) are not divisible by groups ({groups})")
    if c_out % groups:
        raise ConvArgumentError(f"output channels ({c_out}) are not divisible by groups ({groups})")
    if c_per_group * groups != c_in:
        raise ConvArgumentError(
            f"weight expects {c_per_group} input channels per group x {groups} groups = "
            f"{c_per_group * groups}, but input has {c_in} channels"
        )
    if min(kh, kw) < 1 or c_out < 1:
        raise ConvArgumentError(f"weight has an empty dimension: shape {weight_shape}")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    if min(sh, sw) < 1:
        raise ConvArgumentError(f"stride must be positive, got {(sh, sw)}")
    if min(dh, dw) < 1:
        raise ConvArgumentError(f"dilation must be positive, got {(dh, dw)}")
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0, 0, 0)
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ConvArgumentError("padding='same' is not supported for strided convolutions")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            # F.conv2d puts the odd extra pixel on the bottom/right.
            pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ConvArgumentError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = _pair(padding, "padding")
        if min(ph, pw) < 0:
            raise ConvArgumentError(f"padding must be non-negative, got {(ph, pw)}")
        pad = (ph, ph, pw, pw)
    geo = ConvGeometry(n, c_in, h, w, c_out, kh, kw, (sh, sw), pad, (dh, dw), groups)
    hp, wp = geo.padded_hw
    ekh, ekw = geo.eff_kernel
    if hp < ekh or wp < ekw:
        raise ConvArgumentError(
            f"kernel extent {ekh}x{ekw} (kernel {kh}x{kw}, dilation {(dh, dw)}) is larger than the padded "
            f"input {hp}x{wp}"
        )
    return geo


def check_args(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntOrPair,
    padding: Padding,
    dilation: IntOrPair,
    groups: int,
) -> ConvGeometry:
    """Tensor-level checks (type, dtype, device, bias shape) on top of `geometry`."""
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise ConvArgumentError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not input.is_floating_point():
        raise ConvArgumentError(f"input must be a floating-point tensor, got {input.dtype}")
    if input.dtype != weight.dtype:
        raise ConvArgumentError(f"input ({input.dtype}) and weight ({weight.dtype}) dtypes differ")
    if input.device != weight.device:
        raise ConvArgumentError(f"input ({input.device}) and weight ({weight.device}) are on different devices")
    geo = geometry(input.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise ConvArgumentError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if tuple(bias.shape) != (geo.c_out,):
            raise ConvArgumentError(f"bias must have shape ({geo.c_out},), got {tuple(bias.shape)}")
        if bias.dtype != input.dtype:
            raise ConvArgumentError(f"bias ({bias.dtype}) and input ({input.dtype}) dtypes differ")
    return geo


def batched(input: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(4-D input, was_unbatched)."""
    if input.dim() == 3:
        return input.unsqueeze(0), True
    return input, False


def finish(out: torch.Tensor, bias: torch.Tensor | None, input: torch.Tensor, unbatched: bool) -> torch.Tensor:
    """Add bias, restore the unbatched shape, and return channels-last output for channels-last input,
    as F.conv2d does, so a swapped-in algorithm does not change the memory format a network sees."""
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    if unbatched:
        return out.squeeze(0)
    if is_channels_last(input):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def is_channels_last(t: torch.Tensor) -> bool:
    """A 4-D tensor stored channels-last (and not also plainly contiguous, as (N, 1, H, W) or 1x1 maps are)."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def pad_input(x: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
    """Zero-pad (top, bottom, left, right); returns x itself when there is nothing to pad."""
    t, b, left, r = geo.pad
    if t == b == left == r == 0:
        return x
    return torch.nn.functional.pad(x, (left, r, t, b))


def fast_len(n: int) -> int:
    """Smallest m >= n whose prime factors are all in {2, 3, 5, 7}."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1
