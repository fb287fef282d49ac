"""``napari-calf phantom``: end to end, in process."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats as sps

from napari_calf._cli.main import main


def test_phantom_writes_a_dataset_and_reports_its_skew(tmp_path, capsys) -> None:
    import nibabel as nib

    from napari_calf.io.discovery import discover_cases

    out = tmp_path / "ds"
    code = main(["phantom", str(out), "--cases", "2", "--seed", "4", "--skew", "symmetric",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed

    cases = discover_cases(out)
    assert [c.case_id for c in cases] == ["CALF-Phantom-00000", "CALF-Phantom-00001"]
    for case in cases:
        assert sorted(p.name.split("_")[-1] for p in case.images.values()) == [
            "flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"]
        assert case.label is not None and case.label.is_file()

    # the S and K printed are those of the label files on disk (scipy as reference)
    areas = np.concatenate([(np.asarray(nib.load(c.label).dataobj) > 0).sum(axis=(0, 1))
                            for c in cases]).astype(float)
    areas = areas[areas > 0]
    match = re.search(r"S = (-?\d+\.\d+), K = (-?\d+\.\d+)", printed)
    assert match, printed
    assert float(match[1]) == pytest.approx(sps.skew(areas, bias=True), abs=0.006)
    assert float(match[2]) == pytest.approx(sps.kurtosis(areas, bias=True), abs=0.006)
    assert "would pick:" in printed


def test_phantom_refuses_a_non_empty_folder_then_overwrites_when_asked(tmp_path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["phantom", str(tmp_path), "--cases", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]

    assert main(["phantom", str(tmp_path), "--cases", "1", "--overwrite", "--no-progress"]) == 0
    assert (tmp_path / "CALF-Phantom-00000" / "CALF-Phantom-00000_seg.nii.gz").is_file()
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--skew", "middle"], "invalid choice: 'middle'"),
        (["--cases", "0"], "too small"),
        (["--cases", "many"], "not a whole number"),
        (["--seed", "-3"], "negative"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_clear_message(tmp_path, capsys, argv, needle) -> None:
    with pytest.raises(SystemExit) as info:
        main(["phantom", str(tmp_path / "ds"), *argv])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert needle in err
    assert not (tmp_path / "ds").exists()
