"""Where pretrained weights come from, for fine-tuning: the two names the training engine calls.

Both are thin names over cnnlab.weights' one reader (read_weights: a run directory or checkpoint, a
`.safetensors`/`.pt`/`.pth` file with cnnlab's, torchvision's or timm's keys, torchvision:NAME) and one loader
(load_into).
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.base import Family
from cnnlab.weights import StateDict, load_into, read_weights


def read_source(source: str) -> StateDict:
    """The state_dict named by `source` (cnnlab.weights.read_weights, without the metadata)."""
    return read_weights(source)[0]


def load_pretrained(model: nn.Module, family: Family, state: StateDict, source: str) -> list[str]:
    """Load `state` into `model`; when the class counts differ, keep a fresh head. Returns what was done."""
    return load_into(model, state, source=source, family=family, head="replace")
