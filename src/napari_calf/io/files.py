"""Writing files safely: atomically, with ordinary permissions, never clobbering unasked.

Every output of napari-calf (NIfTI volumes, checkpoints, run cards, reports, exports,
screenshots) goes through :func:`atomic_path`: the content is written to a temporary
file in the destination folder and moved onto the destination only once complete, so
a crash never leaves a half-written file where a reader (or a resumed run) would
trust it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import CalfFileExistsError, CalfInputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
    ``path`` as it was and removes the temporary file. With ``overwrite=False`` an
    existing ``path`` raises :class:`~napari_calf.errors.CalfFileExistsError`, checked
    before writing and again, atomically, when moving into place. A missing folder raises
    :class:`~napari_calf.errors.CalfInputError` naming it.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise CalfFileExistsError(path)
    if not path.parent.is_dir():
        raise CalfInputError(path.parent, "the folder to write into does not exist.",
                             "create it first or choose another folder.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes[-2:]),
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; give the result the permissions a plain open() would
        with contextlib.suppress(OSError):
            os.chmod(tmp_path, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp_path, path)
        else:
            move_no_clobber(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
