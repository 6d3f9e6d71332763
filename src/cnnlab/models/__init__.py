"""Model families: one module per family, each defining `FAMILY` (see base.Family).

Families are discovered by importing every module of this package that defines FAMILY, so adding a family is
adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil

from cnnlab.models.base import Family


def discover_families() -> list[Family]:
    families = []
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, Family):
            families.append(family)
    return families
