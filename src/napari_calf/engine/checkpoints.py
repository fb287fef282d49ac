"""Run folders and checkpoints in safe formats only (safetensors + JSON), written atomically.

A run folder holds::

    state.safetensors   the resume point (see resume_file): weights, optimizer, scheduler,
                        RNGs, position, history in ONE file, replaced atomically as a whole
    model.safetensors   best weights (by validation Dice)
    last.safetensors    weights of the resume point, for people and --init
    run.json            the run card: config, data summary, selection, history, versions
    history.csv         one row per epoch
    .napari-calf.lock   held (OS lock) while a process trains into the folder

A resume reads only ``state.safetensors``. Each commit of it carries a new generation
token, also written into the metadata of ``last.safetensors`` and (when it improved)
``model.safetensors`` after the commit, so a resume sees and rewrites a copy that a
kill left behind (see ``_train_state``). Every file is written to a temporary name and
moved into place; a full disk or another write error is a :class:`CalfCheckpointError`
naming the file, and leaves the previous file whole.

Nothing here unpickles: weights and state are read with ``safetensors`` after checking
the file really is one, so a ``torch.save`` pickle (which can run arbitrary code when
loaded) placed where a checkpoint is expected is refused before any byte of it is
interpreted.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import shutil
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CalfCheckpointError, CalfError, CalfFileExistsError, CalfInputError
from ..io.files import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import torch

BEST_WEIGHTS = "model.safetensors"
LAST_WEIGHTS = "last.safetensors"
RUN_CARD = "run.json"
HISTORY = "history.csv"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"  # written by napari-calf before 0.2; removed with --overwrite
LOCK_FILE = ".napari-calf.lock"
#: Files a run writes; ``overwrite`` removes exactly these, never anything else of the user's
#: (nor the lock file, which another process may be holding).
RUN_FILES = (BEST_WEIGHTS, LAST_WEIGHTS, RUN_CARD, HISTORY, STATE_TENSORS, STATE_JSON)

_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


# --------------------------------------------------------------------------- atomic writes


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; the old file stays whole if this fails.

    Raises
    ------
    CalfCheckpointError
        The disk is full (or over quota): the message names the file, the megabytes it
        needs and the fix; or another OS error while writing, named likewise.
    """
    return _write_atomic(Path(path), lambda tmp: tmp.write_bytes(data), len(data))


def write_safetensors_atomic(path: str | Path, tensors: Mapping[str, torch.Tensor],
                             metadata: dict[str, str] | None = None) -> Path:
    """Write CPU-contiguous ``tensors`` as safetensors, atomically (errors as in
    :func:`write_bytes_atomic`). Streams to the disk: no second copy in memory."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        try:
            save_file(dict(tensors), str(tmp), metadata=metadata)
        except SafetensorError as exc:
            # the writer reports a failed write as text ("… No space left on device (os
            # error 28)"); its code is what tells a full disk from anything else
            code = _OS_ERROR.search(str(exc))
            if code is None:
                raise
            errno_ = int(code[1])
            raise OSError(errno_, os.strerror(errno_), str(tmp)) from None

    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    return _write_atomic(Path(path), write, nbytes)


def _write_atomic(path: Path, write: Callable[[Path], object], nbytes: int) -> Path:
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except CalfFileExistsError:
        raise
    except CalfInputError as exc:
        # io.files names a folder that cannot take the file; the OSError it came from
        # (kept as the context) tells a full disk, which run files explain their own way
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError) and not isinstance(cause, CalfError):
            raise write_error(path, cause, nbytes) from None
        raise CalfCheckpointError(str(exc)) from None
    except CalfError:
        raise
    except OSError as exc:
        raise write_error(path, exc, nbytes) from None
    return path


def write_error(path: Path, exc: OSError, nbytes: int) -> CalfCheckpointError:
    """The user's version of an OS error met while writing ``path`` (``nbytes`` long)."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        mb = max(1, math.ceil(nbytes / 1e6))
        return CalfCheckpointError(
            f"{path}: no space left on device writing it ({mb} MB); the previous version of "
            f"the file is kept. Fix: free at least {mb} MB on that disk, or choose another "
            "--out; a training stopped by this continues from its last good resume point "
            "with `napari-calf train --resume RUN`."
        )
    return CalfCheckpointError(
        f"{path}: cannot be written ({exc.strerror or exc}); the previous version of the file "
        "is kept. Fix: check the folder's permissions and the disk, or choose another --out; "
        "a training stopped by this continues with `napari-calf train --resume RUN`."
    )


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (errors as in :func:`write_bytes_atomic`)."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_jsonable)
    return write_bytes_atomic(path, text.encode("utf-8"))


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
    except RecursionError:
        raise CalfCheckpointError(
            f"{path}: its JSON is nested too deeply to be a napari-calf file; it is damaged "
            "or was edited. Fix: use another run folder, or train again."
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
    return write_bytes_atomic(path, buf.getvalue().encode("utf-8"))


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
    n = struct.unpack("<Q", head[:8])[0] if len(head) >= 9 else 0
    # the safetensors shape is tested first: its 8-byte header length may well start with
    # the byte 0x80 that also opens a pickle
    if len(head) >= 9 and head[8:9] == b"{" and n <= _MAX_HEADER:
        if n > size - 8:
            raise CalfCheckpointError(
                f"{path}: the safetensors file is damaged (truncated: its header alone claims "
                f"{n} bytes, the file has {size}). Fix: use another checkpoint (e.g. "
                f"{LAST_WEIGHTS} in the same run folder) or train again."
            )
    elif head[:1] == b"\x80" or head[:2] == b"PK":
        kind = "a Python pickle / torch.save archive"
    else:
        kind = "too short to be a checkpoint" if len(head) < 9 else "not a safetensors file"
    if kind is not None:
        raise CalfCheckpointError(
            f"{path}: refused to load: it is {kind}. napari-calf loads weights only from "
            ".safetensors files and never unpickles, because a pickled checkpoint can run "
            "arbitrary code when opened. Fix: use a napari-calf run folder (model.safetensors), "
            "or convert trusted weights yourself with safetensors.torch.save_file."
        )
    return path


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its header only; ``{}`` when
    the file is missing, damaged or has none (callers treat that as "unknown")."""
    try:
        path = check_safetensors(path)
        with Path(path).open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
    except (CalfCheckpointError, OSError, ValueError, RecursionError, struct.error):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


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
    """Write a model's (or a state dict's) tensors to ``path`` atomically as safetensors
    (a full disk is a :class:`CalfCheckpointError`, see :func:`write_safetensors_atomic`)."""
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    return write_safetensors_atomic(path, cpu_unshared(state), metadata)


def cpu_unshared(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors on the CPU, contiguous and not sharing memory, as safetensors wants
    them (tensors that already are so are not copied)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    # safetensors refuses tensors sharing memory; copies are cheap at checkpoint time
    shared = _shared_ptrs(tensors)
    if shared:
        tensors = {k: (v.clone() if v.data_ptr() in shared else v) for k, v in tensors.items()}
    return tensors


def _shared_ptrs(tensors: Mapping[str, torch.Tensor]) -> set[int]:
    seen: set[int] = set()
    shared: set[int] = set()
    for t in tensors.values():
        if t.numel() == 0:
            continue
        ptr = t.data_ptr()
        (shared if ptr in seen else seen).add(ptr)
    return shared


# --------------------------------------------------------------------------- run folders


def read_run_card(run_dir: str | Path) -> dict[str, Any]:
    """The run card of a run folder (or of the folder holding a weights file), with the
    values inference and resume use checked (:func:`.run_schema.check_run_card`)."""
    from .run_schema import check_run_card

    run_dir = Path(run_dir).expanduser()
    if run_dir.is_file():
        run_dir = run_dir.parent
    card = read_json(run_dir / RUN_CARD)
    if not isinstance(card, dict) or "config" not in card:
        raise CalfCheckpointError(
            f"{run_dir / RUN_CARD}: not a napari-calf run card (no 'config'). "
            "Fix: point to a folder made by `napari-calf train`."
        )
    return check_run_card(card, run_dir / RUN_CARD)


def run_files_present(folder: Path) -> bool:
    """True when ``folder`` holds anything but the lock file."""
    return any(p.name != LOCK_FILE for p in folder.iterdir())


def check_run_dir_free(out_dir: str | Path, *, overwrite: bool) -> Path:
    """Refuse, touching nothing, an ``out_dir`` that is a file, or holds files without
    ``overwrite``.

    Raises
    ------
    CalfCheckpointError, CalfFileExistsError
    """
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise CalfCheckpointError(
            f"{out_dir}: exists and is a file, not a folder. Fix: choose another --out."
        )
    if out_dir.is_dir() and run_files_present(out_dir) and not overwrite:
        raise CalfFileExistsError(out_dir)
    return out_dir


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
    out_dir = check_run_dir_free(out_dir, overwrite=overwrite)
    if out_dir.is_dir() and run_files_present(out_dir):
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
