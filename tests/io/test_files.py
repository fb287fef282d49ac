"""Outputs are written atomically, with ordinary permissions, and never clobbered unasked."""

from __future__ import annotations

import os
from pathlib import Path
import stat

import numpy as np
import pytest

from napari_calf.errors import CalfFileExistsError
from napari_calf.io.files import atomic_path, write_text_atomic
from napari_calf.io.volumes import load_volume, save_volume


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_get_the_permissions_a_plain_open_would(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        text = write_text_atomic(tmp_path / "card.json", "{}")
        nifti = save_volume(np.zeros((4, 4, 4), np.uint8), tmp_path / "pred.nii.gz", np.eye(4))
    finally:
        os.umask(old)
    # mkstemp alone gives 0600: a colleague could not read a shared prediction
    assert _mode(text) == 0o644
    assert _mode(nifti) == 0o644
    assert load_volume(nifti).data.shape == (4, 4, 4)  # the suffix survived: gzip NIfTI


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_no_overwrite_unless_asked(tmp_path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(CalfFileExistsError, match="overwrite"):
        write_text_atomic(target, "theirs", overwrite=False)
    assert target.read_text() == "mine"
    write_text_atomic(target, "theirs", overwrite=True)
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_missing_folder_is_named_with_a_fix(tmp_path) -> None:
    from napari_calf.errors import CalfInputError

    with pytest.raises(CalfInputError, match=r"nowhere.*does not exist.*Fix: create it"):
        write_text_atomic(tmp_path / "nowhere" / "stats.json", "{}")


# --------------------------------------------------------------------------- reliability
# (faults 12, 16 and 22 of the adversarial run: full or read-only disks, orphaned
# temporary files, outputs that were renamed into place but never reached the disk)

import errno
import subprocess
import sys
import time


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name open files")
def test_a_finished_write_reaches_the_disk_before_and_after_the_rename(tmp_path, monkeypatch) -> None:
    """fsync of the temporary file before os.replace, and of the folder after it: a power
    cut right after a run is saved must not leave an empty or half-written weights file."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", _fd_path(fd)))
        real_fsync(fd)

    def replace(src, dst, **kw) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "run.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    tmp_name = Path(events[0][1]).name
    assert tmp_name.startswith(".run.json.") and tmp_name != "run.json"  # the temporary file
    assert events[1][1] == str(target)
    assert events[2][1] == str(tmp_path)  # the folder, so the rename itself is durable


def _oserror(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"),
                                         (errno.ENOSPC, "no space left"),
                                         (errno.EACCES, "permission")])
def test_a_folder_that_cannot_take_the_file_is_named_not_the_temporary(
        tmp_path, monkeypatch, code, words) -> None:
    """Tests run as root, where chmod does not stop writes: the refusal is simulated."""
    from napari_calf.errors import CalfInputError

    real_open = os.open

    def refusing_open(path, flags, *a, **kw):
        if str(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
            raise _oserror(code, str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(CalfInputError) as info:
        write_text_atomic(tmp_path / "stats.json", "{}")
    msg = str(info.value)
    assert str(tmp_path / "stats.json") in msg and words in msg.lower() and "Fix:" in msg
    assert ".tmp" not in msg  # the user never saw that name; it would only confuse


def test_a_disk_that_fills_up_while_writing_is_reported_and_cleaned_up(tmp_path) -> None:
    from napari_calf.errors import CalfInputError

    target = tmp_path / "pred.nii.gz"
    with pytest.raises(CalfInputError, match=r"pred\.nii\.gz.*no space left.*Fix:"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise _oserror(errno.ENOSPC, str(tmp))
    assert list(tmp_path.iterdir()) == []


def test_check_writable_refuses_a_read_only_folder_up_front(tmp_path, monkeypatch) -> None:
    from napari_calf.errors import CalfInputError
    from napari_calf.io.files import check_writable

    check_writable(tmp_path / "out.nii.gz")  # fine, and leaves nothing behind
    assert list(tmp_path.iterdir()) == []
    real_open = os.open

    def refusing_open(path, flags, *a, **kw):
        if str(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
            raise _oserror(errno.EROFS, str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(CalfInputError, match=r"out\.nii\.gz.*read-only"):
        check_writable(tmp_path / "out.nii.gz")


def _orphan_from_a_killed_writer(folder: Path, name: str) -> Path:
    """Run a writer in another process and kill it mid-write: what it leaves behind.

    It writes in a scratch folder of its own (the writer would clean the test's folder)."""
    scratch = folder.parent / f"{folder.name}-scratch-{name}"
    scratch.mkdir()
    code = ("import os, sys; from napari_calf.io.files import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_text('half')\n"
            "    os._exit(9)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code, str(scratch / name)], env=env)
    assert done.returncode == 9
    (orphan,) = list(scratch.iterdir())
    return orphan.rename(folder / orphan.name)


def test_orphans_of_killed_writers_are_removed_but_nothing_else(tmp_path) -> None:
    """Only names of our exact pattern, from a process that is gone, older than this one."""
    from napari_calf.io.files import remove_stale_temp_files

    old = time.time() - 3600
    orphan = _orphan_from_a_killed_writer(tmp_path, "model.safetensors")
    os.utime(orphan, (old, old))
    fresh = _orphan_from_a_killed_writer(tmp_path, "run.json")  # died after we started
    users = [tmp_path / ".model.safetensors.backup", tmp_path / ".run.json.abcdefgh.tmp",
             tmp_path / "notes.tmp"]
    host = orphan.name.split("-")[1]  # .model.safetensors.calf-<host>-<pid>-<random>.tmp…
    alive = tmp_path / f".model.safetensors.calf-{host}-{os.getpid()}-abcd1234.tmp.safetensors"
    for p in [*users, alive]:
        p.write_text("keep")
        os.utime(p, (old, old))
    removed = remove_stale_temp_files(tmp_path)
    assert removed == [orphan]
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {fresh.name, alive.name, *(p.name for p in users)}


def test_a_write_into_a_folder_clears_its_old_orphans(tmp_path) -> None:
    orphan = _orphan_from_a_killed_writer(tmp_path, "history.csv")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    write_text_atomic(tmp_path / "run.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_orphans_from_another_host_are_left_until_long_stale(tmp_path) -> None:
    """A shared (NFS) folder: a pid from another machine says nothing here."""
    from napari_calf.io.files import remove_stale_temp_files

    recent = tmp_path / ".run.json.calf-otherhost-1-abcd1234.tmp.json"
    ancient = tmp_path / ".card.json.calf-otherhost-1-abcd1234.tmp.json"
    for p, age in ((recent, 3600), (ancient, 8 * 86400)):
        p.write_text("x")
        os.utime(p, (time.time() - age,) * 2)
    assert remove_stale_temp_files(tmp_path) == [ancient]
    assert recent.exists()
