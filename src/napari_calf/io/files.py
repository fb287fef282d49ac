"""Writing files safely: atomically, durably, with ordinary permissions, never clobbering unasked.

Every output of napari-calf (NIfTI volumes, checkpoints, run cards, reports, exports,
screenshots) goes through :func:`atomic_path`: the content is written to a temporary
file in the destination folder, flushed to the disk (``fsync``), and moved onto the
destination only once complete; the folder is flushed after the move. So a crash or a
power cut never leaves a half-written file where a reader (or a resumed run) would
trust it.

Temporary names follow one exact pattern, ``.<name>.calf-<host>-<pid>-<random>.tmp<suffix>``,
so that leftovers of a killed process can be recognised and removed
(:func:`remove_stale_temp_files`) without ever touching a user's file. A folder that
cannot take a file (read-only, full, not ours) is reported naming the destination, never
the temporary name.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import CalfError, CalfFileExistsError, CalfInputError

log = logging.getLogger(__name__)

#: When this process started (close enough: nothing writes through this module before).
PROCESS_START = time.time()
#: A leftover from another machine (shared folder) is removed only after this many seconds.
OTHER_HOST_STALE_S = 7 * 86400
#: The host part of temporary names: letters and digits only, so the pattern stays exact.
HOST_TAG = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"

_TEMP_NAME = re.compile(
    r"^\.(?P<dest>.+)\.calf-(?P<host>[A-Za-z0-9]{1,24})-(?P<pid>\d{1,10})-[a-z0-9_]{8}"
    r"\.tmp(?:\.[^.]+){0,2}$"
)
# errno values that say "this folder cannot take the file", as opposed to a bug.
_WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM,
                 errno.EFBIG, errno.EIO, errno.ENAMETOOLONG}
_cleaned_folders: set[str] = set()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- errors


def _free_text(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    return f"{free / 2**20:.1f} MiB"


def write_error(path: Path, exc: OSError) -> CalfInputError:
    """A :class:`CalfInputError` naming ``path`` (never a temporary name) for an OSError
    that says the destination folder cannot take the file."""
    folder = path.parent
    code = exc.errno
    if code == errno.EROFS:
        problem = f"cannot be written: {folder} is on a read-only file system."
        fix = "choose an output folder on a writable disk (or remount the disk read-write)."
    elif code == errno.ENOSPC:
        problem = (f"cannot be written: no space left on the disk that holds {folder} "
                   f"({_free_text(folder)} free).")
        fix = "free disk space, or write to a folder on another disk."
    elif code == errno.EDQUOT:
        problem = f"cannot be written: your disk quota is used up on {folder} (no space left for you)."
        fix = "free space within your quota, or write to a folder on another disk."
    elif code in (errno.EACCES, errno.EPERM):
        problem = f"cannot be written: permission denied in {folder}."
        fix = "choose a folder you may write to, or ask its owner for write access."
    elif code == errno.EFBIG:
        problem = f"cannot be written: the file is too large for the file system of {folder}."
        fix = "write to a folder on a disk with another file system (e.g. not FAT32)."
    elif code == errno.ENAMETOOLONG:
        problem = "cannot be written: the file name is too long for its file system."
        fix = "choose a shorter file name."
    else:
        problem = (f"cannot be written: the disk holding {folder} reported an error "
                   f"({os.strerror(code) if code else exc}).")
        fix = "check the disk (e.g. dmesg, or the file server), or write to another folder."
    return CalfInputError(path, problem, fix)


def _is_write_refusal(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and not isinstance(exc, CalfError)
            and exc.errno in _WRITE_ERRNOS)


# --------------------------------------------------------------------------- leftovers


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this machine; True whenever that cannot be told (safe side)."""
    if os.name != "posix":  # os.kill(pid, 0) would not be a harmless probe there
        return True
    if pid == os.getpid() or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # EPERM: alive, someone else's
        return True
    return True


def leftover_is_stale(host: str, pid: int, newest_mtime: float) -> bool:
    """Whether a temporary file/folder written by ``pid`` on ``host`` is an orphan.

    On this machine: the writer is gone and the leftover is older than this process.
    From another machine (a shared folder), whose processes cannot be checked: untouched
    for :data:`OTHER_HOST_STALE_S`.
    """
    if host == HOST_TAG:
        return newest_mtime < PROCESS_START and not _pid_alive(pid)
    return time.time() - newest_mtime > OTHER_HOST_STALE_S


def temp_name_parts(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a name made by :func:`atomic_path`; None for any other name."""
    m = _TEMP_NAME.match(name)
    return None if m is None else (m["host"], int(m["pid"]))


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Remove orphaned temporary files of :func:`atomic_path` from ``folder``.

    Only regular files whose names match this module's temporary pattern exactly, and
    that :func:`leftover_is_stale` judges orphans, are removed; anything else is left.

    Returns
    -------
    list of Path
        What was removed, sorted.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        parts = temp_name_parts(entry.name)
        if parts is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_file(follow_symlinks=False) or not leftover_is_stale(*parts, st.st_mtime):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        log.info("removed %s, left behind by an interrupted write", entry.path)
        removed.append(Path(entry.path))
    return sorted(removed)


def _clean_once(folder: Path) -> None:
    key = str(folder.resolve()) if folder.exists() else str(folder)
    if key not in _cleaned_folders:
        _cleaned_folders.add(key)
        remove_stale_temp_files(folder)


# --------------------------------------------------------------------------- writing


def _temp_file(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name[:100]}.calf-{HOST_TAG}-{os.getpid()}-",
        suffix=".tmp" + "".join(path.suffixes[-2:]), dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _fsync_path(path: Path, *, folder: bool = False) -> None:
    """Flush ``path`` (a file, or with ``folder`` a directory entry list) to the disk."""
    if folder and os.name != "posix":
        return  # folders cannot be opened for fsync on Windows
    flags = os.O_RDONLY if os.name == "posix" else os.O_RDWR
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:
        if not folder or exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise  # some file systems cannot fsync a folder; a file they all can
    finally:
        os.close(fd)


def move_no_clobber(tmp: Path, path: Path) -> None:
    """Move ``tmp`` onto ``path`` unless ``path`` exists (a hard link fails atomically)."""
    try:
        os.link(tmp, path)
    except FileExistsError as exc:
        raise CalfFileExistsError(path) from exc
    except OSError:  # filesystems without hard links: an exists() check must do
        if path.exists():
            raise CalfFileExistsError(path) from None
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    The temporary name ends with ``path``'s own suffixes (``.nii.gz``, ``.png`` …) so
    writers that pick a format from the name behave. A crash or an exception leaves
    ``path`` as it was and removes the temporary file. The finished file is fsynced
    before the move and its folder after it. Orphans of killed writers in the folder are
    removed once per process (:func:`remove_stale_temp_files`).

    Raises
    ------
    CalfFileExistsError
        With ``overwrite=False``, ``path`` exists (checked before writing and again,
        atomically, when moving into place).
    CalfInputError
        The folder is missing, read-only, full, or not writable for us (the message names
        ``path`` and the reason, never the temporary name).
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise CalfFileExistsError(path)
    if not path.parent.is_dir():
        raise CalfInputError(path.parent, "the folder to write into does not exist.",
                             "create it first or choose another folder.")
    _clean_once(path.parent)
    try:
        tmp_path = _temp_file(path)
    except OSError as exc:
        if _is_write_refusal(exc):
            raise write_error(path, exc) from None
        raise
    try:
        try:
            yield tmp_path
        except OSError as exc:
            if _is_write_refusal(exc):
                raise write_error(path, exc) from None
            raise
        try:
            # mkstemp makes 0600 files; give the result the permissions a plain open() would
            with contextlib.suppress(OSError):
                os.chmod(tmp_path, 0o666 & ~_umask())
            _fsync_path(tmp_path)
            if overwrite:
                os.replace(tmp_path, path)
            else:
                move_no_clobber(tmp_path, path)
            _fsync_path(path.parent, folder=True)
        except OSError as exc:
            if _is_write_refusal(exc):
                raise write_error(path, exc) from None
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def check_writable(path: str | Path, *, need_bytes: int = 0) -> None:
    """Refuse, before any work, an output ``path`` whose folder cannot take it.

    The folder (or, when it does not exist yet, its nearest existing ancestor, where it
    would be created) gets a real probe file, created and removed: permissions alone do
    not tell a read-only mount, and root passes every permission check.

    Raises
    ------
    CalfInputError
        Read-only, not permitted, or with less than ``need_bytes`` free (names ``path``).
    """
    path = Path(path).expanduser()
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CalfInputError(path, f"cannot be written: {folder} is a file, not a folder.",
                             "choose an output path inside a folder.")
    try:
        probe = _temp_file(folder / path.name)
        probe.unlink()
    except OSError as exc:
        if _is_write_refusal(exc):
            raise write_error(path, exc) from None
        raise
    if need_bytes > 0:
        free = shutil.disk_usage(folder).free
        if free < need_bytes:
            raise write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
