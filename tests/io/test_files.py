"""Outputs are written atomically, with ordinary permissions, and never clobbered unasked."""

from __future__ import annotations

import os
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
