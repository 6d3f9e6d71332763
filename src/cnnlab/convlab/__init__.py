"""The convolution lab: direct (the oracle), im2col, FFT and Winograd, each with F.conv2d's signature.

from cnnlab import convlab
y = convlab.conv2d_winograd(x, w, padding=1, tile=4)
n = convlab.use_algorithm(model, "winograd4")   # swap every eligible nn.Conv2d in place
"""

from cnnlab.convlab._common import ConvArgumentError
from cnnlab.convlab.direct import conv2d_direct
from cnnlab.convlab.fft import conv2d_fft
from cnnlab.convlab.im2col import column_bytes, conv2d_im2col
from cnnlab.convlab.module import ALGORITHMS, Conv2d, conv2d, is_eligible, use_algorithm
from cnnlab.convlab.winograd import WinogradPrecisionWarning, conv2d_winograd, cook_toom, transform_filters
from cnnlab.convlab.workspace import (
    WorkspaceLimitError,
    get_workspace_limit,
    set_workspace_limit,
    workspace_bytes,
    workspace_limit,
)

__all__ = [
    "ALGORITHMS",
    "ConvArgumentError",
    "Conv2d",
    "WinogradPrecisionWarning",
    "WorkspaceLimitError",
    "column_bytes",
    "conv2d",
    "conv2d_direct",
    "conv2d_fft",
    "conv2d_im2col",
    "conv2d_winograd",
    "cook_toom",
    "get_workspace_limit",
    "is_eligible",
    "set_workspace_limit",
    "transform_filters",
    "use_algorithm",
    "workspace_bytes",
    "workspace_limit",
]
