"""Run folders and checkpoints in safe formats only (safetensors + JSON), written atomically.

A run folder holds::

    model.safetensors   best weights (by validation Dice)
    last.safetensors    weights after the last finished step (for resume)
    run.json            the run card: config, data summary, selection, history, versions
    history.csv         one row per epoch
    state.safetensors   optimizer / scheduler / RNG tensors (for resume)
    state.json          the rest of that state, with pointers into state.safetensors

Nothing here unpickles: weights and state are read with ``safetensors`` after checking
the file really is one, so a ``torch.save`` pickle (which can run arbitrary code when
loaded) placed where a checkpoint is expected is refused before any byte of it is
interpreted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CalfCheckpointError, CalfConfigError, CalfFileExistsError
from ..io.files import _umask, atomic_path, write_text_atomic  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    import torch

BEST_WEIGHTS = "model.safetensors"
LAST_WEIGHTS = "last.safetensors"
RUN_CARD = "run.json"
HISTORY = "history.csv"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
#: Files a run writes; ``overwrite`` removes exactly these, never anything else of the user's.
RUN_FILES = (BEST_WEIGHTS, LAST_WEIGHTS, RUN_CARD, HISTORY, STATE_TENSORS, STATE_JSON)

_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


# --------------------------------------------------------------------------- atomic writes


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    # numpy scalars/arrays and paths appear in summaries; turn them into plain JSON
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalfCheckpointError(
            f"{path}: not found. Fix: point to a napari-calf run folder (it holds {RUN_CARD})."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalfCheckpointError(
            f"{path}: not valid JSON ({exc}); the file is damaged or not from napari-calf. "
            "Fix: use another run folder, or train again."
        ) from None


def write_csv_atomic(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write dict rows as CSV (columns: union of keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    return write_text_atomic(path, buf.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else value


# --------------------------------------------------------------------------- safe loading


def check_safetensors(path: str | Path) -> Path:
    """Make sure ``path`` is a safetensors file before anything parses it.

    A safetensors file starts with an 8-byte little-endian header length followed by a
    JSON object. Pickles (``torch.save``, ``.pt``, ``.pth``, ``.ckpt``) start otherwise
    and are refused here, unread: unpickling can run arbitrary code.

    Raises
    ------
    CalfCheckpointError
        Missing, empty, a pickle / zip archive, or otherwise not safetensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CalfCheckpointError(
            f"{path}: no such checkpoint file. Fix: give a napari-calf run folder or its "
            f"{BEST_WEIGHTS}."
        )
    with path.open("rb") as fh:
        head = fh.read(9)
    size = path.stat().st_size
    kind = None
    if head[:1] == b"\x80" or head[:2] == b"PK":
        kind = "a Python pickle / torch.save archive"
    elif len(head) < 9:
        kind = "too short to be a checkpoint"
    else:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] != b"{" or n > _MAX_HEADER:
            kind = "not a safetensors file"
        elif n > size - 8:
            raise CalfCheckpointError(
                f"{path}: the safetensors file is damaged (truncated: its header alone claims "
                f"{n} bytes, the file has {size}). Fix: use another checkpoint (e.g. "
                f"{LAST_WEIGHTS} in the same run folder) or train again."
            )
    if kind is not None:
        raise CalfCheckpointError(
            f"{path}: refused to load: it is {kind}. napari-calf loads weights only from "
            ".safetensors files and never unpickles, because a pickled checkpoint can run "
            "arbitrary code when opened. Fix: use a napari-calf run folder (model.safetensors), "
            "or convert trusted weights yourself with safetensors.torch.save_file."
        )
    return path


def resolve_weights(path: str | Path, *, which: str = BEST_WEIGHTS) -> Path:
    """A run folder → its weights file; a file → itself (after the safety check)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / which
    return check_safetensors(path)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict (on the CPU) from a safetensors file or run folder, never unpickling."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_weights(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CalfCheckpointError(
            f"{path}: the safetensors file is damaged ({exc}). Fix: use another checkpoint "
            f"(e.g. {LAST_WEIGHTS} in the same run folder) or train again."
        ) from None


def save_weights(
    state: Mapping[str, torch.Tensor] | Any, path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write a model's (or a state dict's) tensors to ``path`` atomically as safetensors."""
    from safetensors.torch import save_file

    if hasattr(state, "state_dict"):
        state = state.state_dict()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    # safetensors refuses tensors sharing memory; copies are cheap at checkpoint time
    shared = _shared_ptrs(tensors)
    if shared:
        tensors = {k: (v.clone() if v.data_ptr() in shared else v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def _shared_ptrs(tensors: Mapping[str, torch.Tensor]) -> set[int]:
    seen: set[int] = set()
    shared: set[int] = set()
    for t in tensors.values():
        if t.numel() == 0:
            continue
        ptr = t.data_ptr()
        (shared if ptr in seen else seen).add(ptr)
    return shared


# --------------------------------------------------------------------------- training state


def _flatten(obj: Any, prefix: str, tensors: dict[str, Any]) -> Any:
    """Split a nested state into JSON-able structure + tensors keyed by their path."""
    import torch

    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _flatten(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return obj.item()
    raise CalfConfigError(
        f"Cannot store training state entry {prefix!r} of type {type(obj).__name__} safely."
    )


def _unflatten(obj: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_training_state(run_dir: str | Path, state: dict[str, Any]) -> None:
    """Write resume state: tensors to ``state.safetensors``, the rest to ``state.json``.

    The JSON is written last; :func:`load_training_state` checks both belong together
    (a token shared by the two files), so a crash between the writes is detected.
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tensors: dict[str, Any] = {}
    structure = _flatten(state, "", tensors)
    token = os.urandom(8).hex()
    with atomic_path(run_dir / STATE_TENSORS) as tmp:
        save_file(tensors, str(tmp), metadata={"token": token})
    write_json_atomic(run_dir / STATE_JSON, {"token": token, "state": structure})


def load_training_state(run_dir: str | Path) -> dict[str, Any]:
    """Read what :func:`save_training_state` wrote (no unpickling)."""
    from safetensors import safe_open

    run_dir = Path(run_dir)
    meta = read_json(run_dir / STATE_JSON)
    path = check_safetensors(run_dir / STATE_TENSORS)
    tensors: dict[str, Any] = {}
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        token = (fh.metadata() or {}).get("token")
        for key in fh.keys():
            tensors[key] = fh.get_tensor(key)
    if not isinstance(meta, dict) or token != meta.get("token"):
        raise CalfCheckpointError(
            f"{run_dir}: {STATE_JSON} and {STATE_TENSORS} do not belong together (a save was "
            "interrupted). Fix: start a new run with --init on this folder's weights instead "
            "of resuming."
        )
    return _unflatten(meta["state"], tensors)


# --------------------------------------------------------------------------- run folders


def read_run_card(run_dir: str | Path) -> dict[str, Any]:
    """The run card of a run folder (or of the folder holding a weights file)."""
    run_dir = Path(run_dir).expanduser()
    if run_dir.is_file():
        run_dir = run_dir.parent
    card = read_json(run_dir / RUN_CARD)
    if not isinstance(card, dict) or "config" not in card:
        raise CalfCheckpointError(
            f"{run_dir / RUN_CARD}: not a napari-calf run card (no 'config'). "
            "Fix: point to a folder made by `napari-calf train`."
        )
    return card


def prepare_run_dir(out_dir: str | Path, *, overwrite: bool, need_bytes: int) -> Path:
    """Create (or clear, when asked) a run folder and check it can take the run's files.

    Done before training starts, so a full disk or a read-only folder fails in seconds,
    not after an hour of training.

    Raises
    ------
    CalfFileExistsError
        The folder holds files and ``overwrite`` is False.
    CalfCheckpointError
        The folder cannot be created or written, or the disk lacks ``need_bytes``.
    """
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise CalfCheckpointError(
            f"{out_dir}: exists and is a file, not a folder. Fix: choose another --out."
        )
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise CalfFileExistsError(out_dir)
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (out_dir / name).unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise CalfCheckpointError(
            f"{out_dir}: cannot write there ({exc.strerror or exc}). "
            "Fix: choose a folder you can write to with --out."
        ) from None
    check_free_space(out_dir, need_bytes)
    return out_dir


def check_free_space(folder: str | Path, need_bytes: int) -> None:
    """Raise :class:`CalfCheckpointError` when ``folder``'s disk has less than ``need_bytes``."""
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise CalfCheckpointError(
            f"{folder}: only {free / 2**20:.0f} MiB free, but this step needs about "
            f"{need_bytes / 2**20:.0f} MiB. Fix: free disk space or choose a folder on "
            "another disk."
        )
