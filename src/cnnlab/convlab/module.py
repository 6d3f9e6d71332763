"""Model-level use: a Conv2d module with a choice of algorithm, and an in-place swap for whole networks."""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.convlab._common import ConvArgumentError, IntOrPair, Padding
from cnnlab.convlab.direct import conv2d_direct
from cnnlab.convlab.fft import conv2d_fft
from cnnlab.convlab.im2col import conv2d_im2col
from cnnlab.convlab.winograd import TILES, R, conv2d_winograd, transform_filters
from cnnlab.errors import UnknownNameError

# "torch" is F.conv2d itself (oneDNN on CPU, cuDNN on CUDA): the baseline and the way back.
ALGORITHMS = ("torch", "direct", "im2col", "fft") + tuple(f"winograd{t}" for t in TILES)


def _check_name(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise UnknownNameError("convolution algorithm", algorithm, ALGORITHMS)


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    algorithm: str = "torch",
) -> torch.Tensor:
    """F.conv2d computed by `algorithm` (one of ALGORITHMS)."""
    _check_name(algorithm)
    args = (input, weight, bias, stride, padding, dilation, groups)
    if algorithm == "torch":
        return F.conv2d(*args)
    if algorithm.startswith("winograd"):
        return conv2d_winograd(*args, tile=int(algorithm[len("winograd") :]))
    return {"direct": conv2d_direct, "im2col": conv2d_im2col, "fft": conv2d_fft}[algorithm](*args)


def unsupported_reason(conv: nn.Conv2d, algorithm: str) -> str | None:
    """Why `algorithm` cannot run this conv, or None when it can."""
    _check_name(algorithm)
    if not algorithm.startswith("winograd"):
        return None
    problems = []
    if tuple(conv.kernel_size) != (R, R):
        problems.append(f"kernel {conv.kernel_size[0]}x{conv.kernel_size[1]} (only 3x3)")
    if tuple(conv.stride) != (1, 1):
        problems.append(f"stride {tuple(conv.stride)} (only 1)")
    if tuple(conv.dilation) != (1, 1):
        problems.append(f"dilation {tuple(conv.dilation)} (only 1)")
    return ", ".join(problems) or None


def is_eligible(conv: nn.Module, algorithm: str) -> bool:
    """True for a plain nn.Conv2d (or convlab.Conv2d) that `algorithm` supports. Subclasses of nn.Conv2d
    with their own forward (weight standardisation, ...) are left alone: swapping would drop their logic."""
    return type(conv) in (nn.Conv2d, Conv2d) and unsupported_reason(conv, algorithm) is None


class Conv2d(nn.Conv2d):
    """nn.Conv2d whose forward runs a convlab algorithm; same parameters, same state_dict keys.

    cache_filters=True (Winograd only) keeps the transformed filters U between calls whenever no gradient
    is wanted for the weight (inference): the filter transform is then paid once, as inference engines do.
    U is recomputed when the weight changes through autograd-visible ways (an optimizer step,
    load_state_dict, a new Parameter, .to()); edits through `weight.data` are invisible to PyTorch's
    version counter, so call `clear_filter_cache()` after those. Off by default for that reason."""

    def __init__(self, *args: Any, algorithm: str = "torch", cache_filters: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.algorithm = algorithm
        self.cache_filters = cache_filters
        self._filter_cache: tuple[weakref.ref, tuple, torch.Tensor] | None = None

    def clear_filter_cache(self) -> None:
        self._filter_cache = None

    def _transformed_filters(self, weight: torch.Tensor, tile: int) -> torch.Tensor:
        # A weak reference catches replaced Parameters (an id could be reused), the version counter in-place
        # updates; data_ptr, dtype and device catch .to()/.half(), which swap the storage under the same object.
        key = (weight._version, weight.data_ptr(), weight.dtype, weight.device, tile, self.groups)
        cache = self._filter_cache
        if cache is None or cache[0]() is not weight or cache[1] != key:
            with torch.no_grad():
                cache = self._filter_cache = (weakref.ref(weight), key, transform_filters(weight, tile, self.groups))
        return cache[2]

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @algorithm.setter
    def algorithm(self, value: str) -> None:
        reason = unsupported_reason(self, value)
        if reason:
            raise ConvArgumentError(f"algorithm '{value}' does not support this conv: {reason}")
        self._algorithm = value

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, algorithm: str, cache_filters: bool = False) -> Conv2d:
        """A Conv2d sharing `conv`'s Parameter objects (optimizers and tied weights keep working)."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",  # placeholders, replaced by the shared parameters just below
            algorithm=algorithm,
            cache_filters=cache_filters,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":  # reflect/replicate/circular: pad first, as nn.Conv2d does
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        wants_grad = torch.is_grad_enabled() and weight.requires_grad
        if self.cache_filters and self.algorithm.startswith("winograd") and not wants_grad:
            tile = int(self.algorithm[len("winograd") :])
            u = self._transformed_filters(weight, tile)
            return conv2d_winograd(
                input, weight, bias, self.stride, padding, self.dilation, self.groups, tile, transformed_weight=u
            )
        self._filter_cache = None  # training: the cache would go stale at the next step; free it
        return conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups, self.algorithm)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, algorithm={self.algorithm!r}"


def use_algorithm(model: nn.Module, algorithm: str, cache_filters: bool = False) -> int:
    """Swap every eligible conv inside `model` to `algorithm`, in place; return how many were swapped.

    Plain nn.Conv2d children are replaced by convlab.Conv2d sharing their parameters; existing
    convlab.Conv2d modules have their algorithm set. cache_filters: see Conv2d. Ineligible convs (e.g. 7x7
    or strided ones for Winograd) keep running as before, so the model stays correct.
    """
    _check_name(algorithm)
    if type(model) is Conv2d:  # the root itself: nothing to replace, just switch it
        if unsupported_reason(model, algorithm) is None:
            model.algorithm, model.cache_filters = algorithm, cache_filters
            model.clear_filter_cache()
            return 1
        return 0
    if type(model) is nn.Conv2d:
        raise ValueError(
            "use_algorithm swaps children in place and cannot replace the root nn.Conv2d itself; "
            "use convlab.Conv2d.from_conv(conv, algorithm)"
        )
    swapped: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in swapped:  # the same conv reached through a second parent
                setattr(parent, name, swapped[id(child)])
            elif is_eligible(child, algorithm):
                if type(child) is Conv2d:
                    child.algorithm, child.cache_filters = algorithm, cache_filters
                    child.clear_filter_cache()
                    new = child
                else:
                    new = Conv2d.from_conv(child, algorithm, cache_filters)
                    setattr(parent, name, new)
                swapped[id(child)] = new
    return len(swapped)
