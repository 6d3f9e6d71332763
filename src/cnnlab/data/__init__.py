"""cnnlab's data path: spec strings -> a uint8 memory-mapped cache -> batched augmentation on the device.

from cnnlab import data
ds = data.load("shapes", split="train")                  # or npz:/folder:/cifar10:/cifar100:/mnist:PATH
data.available_splits("folder:imagenet")                # ("train", "val"): no test/ folder
loader = data.Loader(ds, batch_size=512, augment="flip,crop:4", seed=0)
for x, y in loader: ...                                  # x float32 (B, C, H, W) normalized, y int64
views = data.views(x, "tencrop:28")                      # (10, B, C, 28, 28) for test-time averaging
"""

from cnnlab.data.augment import PRESETS, Augment, parse_augment
from cnnlab.data.cache import cache_root
from cnnlab.data.dataset import Dataset, DataWarning, available_splits, load
from cnnlab.data.loader import Loader
from cnnlab.data.shapes import CLASSES as SHAPES_CLASSES
from cnnlab.data.spec import Spec, parse_spec
from cnnlab.data.tta import views

__all__ = [
    "PRESETS",
    "SHAPES_CLASSES",
    "Augment",
    "DataWarning",
    "Dataset",
    "Loader",
    "Spec",
    "available_splits",
    "cache_root",
    "load",
    "parse_augment",
    "parse_spec",
    "views",
]
