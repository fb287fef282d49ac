"""One process at a time per run folder: an exclusive OS lock on a file inside it.

Two trainings writing into one folder would each believe they own it and both exit 0,
one run silently lost. :func:`lock_run_folder` takes an exclusive, non-blocking OS lock
(``flock`` on POSIX, ``msvcrt.locking`` on Windows) on ``.napari-calf.lock`` inside the
folder and writes who holds it (pid, host, start, command) into it. The OS drops the
lock when the process ends, however it ends, so a crash never leaves a stale lock; the
file itself stays and is harmless. A second process is refused with a
:class:`CalfCheckpointError` naming the holder.

Every entry into a run folder goes through the core's ``iter_train`` (CLI, napari
widget, comparison study), which takes this lock, so all of them are covered. A study
or an audit folder is held the same way (:func:`lock_folder`) by ``compare`` and
``audit`` for as long as they run, collect and write their reports.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import CalfCheckpointError
from .checkpoints import LOCK_FILE

log = logging.getLogger(__name__)

_WINDOWS_LOCK_OFFSET = 2**30  # lock a byte far past the holder text, which stays readable
_NO_LOCKING = {errno.ENOLCK, getattr(errno, "ENOTSUP", -1), getattr(errno, "EOPNOTSUPP", -1)}


class RunFolderLock:
    """A held lock; :meth:`release` (or leaving a ``with`` block, or process exit) ends it.

    Attributes
    ----------
    note : str
        Empty, or why the folder could not be locked (a filesystem without locks): the
        caller shows it, since a second process would then not be stopped.
    """

    def __init__(self, path: Path, fd: int | None, note: str = "") -> None:
        self.path = path
        self._fd = fd
        self.note = note

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            _unlock(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def __enter__(self) -> RunFolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a dropped lock object must not keep the folder
        self.release()


def lock_run_folder(folder: str | Path) -> RunFolderLock:
    """Create ``folder`` if needed and hold it for this process.

    Raises
    ------
    CalfCheckpointError
        Another process holds the folder (the message names its pid, host, start time
        and command), or the folder cannot be created or written.
    """
    return lock_folder(folder, doing="is training in this run folder",
                       fix="wait until it ends or stop it (Ctrl-C, or Stop in the training "
                           "panel), or train into another --out.")


def lock_folder(folder: str | Path, *, doing: str, fix: str) -> RunFolderLock:
    """Create ``folder`` if needed and hold it for this process (any napari-calf folder
    one process at a time may write: a run, a study, an audit).

    ``doing`` and ``fix`` complete the refusal: "<folder>: another napari-calf process
    <doing> (<holder>). Fix: <fix>".

    Raises
    ------
    CalfCheckpointError
        Another process holds the folder, or the folder cannot be created or written.
    """
    folder = Path(folder).expanduser()
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CalfCheckpointError(
            f"{folder}: cannot write there ({exc.strerror or exc}). "
            "Fix: choose a folder you can write to with --out."
        ) from None
    try:
        _lock(fd)
    except OSError as exc:
        if exc.errno in _NO_LOCKING:
            os.close(fd)
            note = (f"{folder}: this filesystem does not support file locks, so another "
                    "process writing into the same folder would not be stopped; make sure "
                    "none does.")
            log.warning(note)
            return RunFolderLock(path, None, note)
        holder = _read_holder(fd)
        os.close(fd)
        raise CalfCheckpointError(f"{folder}: another napari-calf process {doing} ({holder}). Fix: {fix}") from None
    _write_holder(fd)
    return RunFolderLock(path, fd)


def _holder_info() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)[:500]}


def _write_holder(fd: int) -> None:
    data = json.dumps(_holder_info()).encode("utf-8")
    with contextlib.suppress(OSError):  # the lock is what matters; the text is a courtesy
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8"))
        text = f"pid {info['pid']} on host {info['host']}, since {info['started']}"
        return text + (f": {info['command']}" if info.get("command") else "")
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown: it is just starting"


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
