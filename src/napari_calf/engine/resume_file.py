"""The resume point: one safetensors file holding a training's whole state.

Weights, optimizer, scheduler, RNG states, position and history are saved as ONE file,
``state.safetensors``, moved into place atomically, so a kill at any moment leaves either
the previous resume point or the new one, never a mixture. The nested state is split by
:func:`flatten` into tensors (stored as tensors) and a structure that JSON can hold
(stored in the file's metadata); :func:`unflatten` puts it back. Nothing is pickled, so
reading a resume point cannot run code. Field values are checked where they are used
(:func:`.run_schema.check_state`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checkpoints import LAST_WEIGHTS, STATE_TENSORS, cpu_unshared, check_safetensors
from .checkpoints import safetensors_metadata, write_safetensors_atomic
from ..errors import CalfCheckpointError, CalfConfigError

#: Marks a resume point of this layout (one file) in its safetensors metadata.
STATE_FORMAT = "napari-calf-resume-2"


def save_training_state(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Commit a resume point: the whole nested ``state`` (tensors and the rest) as ONE
    safetensors file, moved into place atomically, so a kill at any moment leaves either
    the previous resume point or this one, never a mixture."""
    tensors: dict[str, Any] = {}
    structure = flatten(state, "", tensors)
    metadata = {"format": STATE_FORMAT, "structure": json.dumps(structure)}
    return write_safetensors_atomic(Path(run_dir) / STATE_TENSORS, cpu_unshared(tensors),
                                    metadata)


def load_training_state(run_dir: str | Path) -> dict[str, Any]:
    """Read what :func:`save_training_state` wrote (no unpickling). Field values are
    checked by :func:`.run_schema.check_state` where they are used.

    Raises
    ------
    CalfCheckpointError
        Missing, not a safetensors file, written by an older napari-calf, or damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = check_safetensors(Path(run_dir) / STATE_TENSORS)
    meta = safetensors_metadata(path)
    if meta.get("format") != STATE_FORMAT:
        raise CalfCheckpointError(
            f"{path}: not a napari-calf resume point of this version (an older napari-calf "
            "kept it in two files, which a crash could leave out of step). Fix: start a new "
            f"run with --init {Path(run_dir) / LAST_WEIGHTS} to continue from its weights."
        )
    damaged = (f"{path}: the resume point is damaged or was edited. Fix: start a new run "
               f"with --init {Path(run_dir) / LAST_WEIGHTS}, or train again.")
    try:
        structure = json.loads(meta.get("structure", ""))
        tensors = load_file(str(path), device="cpu")
        return unflatten(structure, tensors)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RecursionError):
        raise CalfCheckpointError(damaged) from None


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
