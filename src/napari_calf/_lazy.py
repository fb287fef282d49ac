"""Lazy package faces: a subpackage's public names, imported on first use.

Each subpackage's ``__init__`` lists its public names and the file that defines them.
Importing ``napari_calf.engine.models`` runs ``engine/__init__`` first, so an eager face
would import torch, smp and every sibling for any file of the part; resolving names on
first access keeps ``import napari_calf.io`` as light as the file a caller needs.
Files inside a part import their siblings directly, never through the face.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_face(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` exporting ``{name: submodule}``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
