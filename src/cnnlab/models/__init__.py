"""Model families: one module per family, each defining `FAMILY` (see base.Family).

`FAMILIES` is the registration: adding a family is adding its file and one entry here, so grep finds where a
family is registered (torchvision's `_api.py` does the same with a decorator). The registry
(cnnlab.registry) builds its name -> (family, spec) table from it and raises on a name registered twice.
"""

from __future__ import annotations

from cnnlab.models import (
    alexnet,
    densenet,
    efficientnet,
    googlenet,
    inception_v3,
    inception_v4,
    labnet,
    lenet,
    mobilenet_v1,
    mobilenet_v2,
    resnet,
    shufflenet_v2,
    squeezenet,
    vgg,
    zfnet,
)
from cnnlab.models.base import Family

# In module-name order, the order the registry (and so every listing before sorting) has always seen them in.
FAMILIES: tuple[Family, ...] = (
    alexnet.FAMILY,
    densenet.FAMILY,
    efficientnet.FAMILY,
    googlenet.FAMILY,
    inception_v3.FAMILY,
    inception_v4.FAMILY,
    labnet.FAMILY,
    lenet.FAMILY,
    mobilenet_v1.FAMILY,
    mobilenet_v2.FAMILY,
    resnet.FAMILY,
    shufflenet_v2.FAMILY,
    squeezenet.FAMILY,
    vgg.FAMILY,
    zfnet.FAMILY,
)
