"""Nested training state <-> (JSON-able structure, flat tensors): how a resume point is stored.

The optimizer's, scheduler's and RNGs' states are nests of dicts (some keyed by ints),
tuples, lists, numbers and tensors. :func:`flatten` lifts the tensors out under their
path, leaving a structure that JSON can hold; :func:`unflatten` puts them back. No
pickling anywhere, so a resume point cannot run code when it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import CalfConfigError


def flatten(obj: Any, prefix: str, tensors: dict[str, Any]) -> Any:
    """Split a nested state into JSON-able structure + tensors keyed by their path."""
    import torch

    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return obj.item()
    raise CalfConfigError(
        f"Cannot store training state entry {prefix!r} of type {type(obj).__name__} safely."
    )


def unflatten(obj: Any, tensors: Mapping[str, Any]) -> Any:
    """Inverse of :func:`flatten`; raises KeyError/TypeError/ValueError on a damaged structure."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: unflatten(v, tensors) for k, v in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj
