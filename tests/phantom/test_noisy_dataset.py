"""``write_dataset(label_errors=...)`` / ``napari-calf phantom --label-errors``: the label
files carry the injected errors, ``truth/`` the clean labels, ``label_errors.json`` the
record, and each kind can be measured in the written files against ``truth/``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_calf.events import drain
from napari_calf.phantom import make_labels, write_dataset

N, SEED = 4, 3
SPEC = ("missed=0.3,erased-slices=0.4,dilate=0.4:4mm,erode=0.4:2mm,spurious=0.5,"
        "systematic-dilate=2mm")
CONN26 = np.ones((3, 3, 3), dtype=bool)


def _read(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("noisy") / "data"
    cases = drain(write_dataset(out, N, seed=SEED, label_errors=SPEC))
    doc = json.loads((out / "label_errors.json").read_text())
    noisy = {c.case_id: _read(c.label) for c in cases}
    truth = {c.case_id: _read(out / "truth" / c.case_id / c.label.name) for c in cases}
    flair = {c.case_id: _read(c.images["flair"]) for c in cases}
    return {"out": out, "cases": cases, "doc": doc, "noisy": noisy, "truth": truth,
            "flair": flair}


def _components(label: np.ndarray) -> np.ndarray:
    """26-components of the truth numbered by size, 1 = largest (ties: scipy's order)."""
    comps, n = ndi.label(label > 0, structure=CONN26)
    sizes = np.bincount(comps.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    remap = np.zeros(n + 1, dtype=int)
    remap[order + 1] = np.arange(1, n + 1)
    return remap[comps]


def test_truth_is_the_clean_phantom_and_the_record_adds_up(written: dict) -> None:
    from napari_calf.io.discovery import discover_cases

    doc = written["doc"]
    assert doc["spec"] == SPEC and doc["seed"] == SEED
    assert [c.case_id for c in discover_cases(written["out"])] == list(written["truth"])  # truth/ is no case
    for i, (cid, truth) in enumerate(written["truth"].items()):
        assert np.array_equal(truth, make_labels(SEED, skew="right", case_index=i, n_cases=N))
        mine = [e for e in doc["errors"] if e["case_id"] == cid]
        # every changed voxel belongs to exactly one record
        assert int(np.count_nonzero(written["noisy"][cid] != truth)) == sum(e["voxels"] for e in mine)
    kinds = {e["kind"] for e in doc["errors"]}
    assert kinds == {"missed", "erased-slices", "dilate", "erode", "spurious", "systematic-dilate"}
    assert doc["counts"] == {k: sum(e["kind"] == k for e in doc["errors"]) for k in doc["counts"]}
    meta = json.loads((written["out"] / "dataset.json").read_text())
    assert meta["label_errors"]["n_errors"] == len(doc["errors"])


def test_each_kind_is_measurable_in_the_files(written: dict) -> None:
    for e in written["doc"]["errors"]:
        truth, noisy = written["truth"][e["case_id"]], written["noisy"][e["case_id"]]
        comps = _components(truth)
        first, last = e["slices"]
        if e["kind"] == "missed":
            lesion = comps == e["component"]
            assert lesion.sum() == e["voxels"] and not noisy[lesion].any()
        elif e["kind"] == "erased-slices":
            lesion = comps == e["component"]
            assert lesion[..., first:last + 1].sum() == e["voxels"]
            assert not noisy[..., first:last + 1][lesion[..., first:last + 1]].any()
            # labelled on the slices just outside the gap: a gap, not an end
            assert noisy[..., first - 1][lesion[..., first - 1]].any()
            assert noisy[..., last + 1][lesion[..., last + 1]].any()
        elif e["kind"] == "erode":
            lesion = comps == e["component"]
            assert int((lesion & (noisy == 0)).sum()) == e["voxels"]
        elif e["kind"] == "dilate":
            lesion = comps == e["component"]
            near = ndi.binary_dilation(lesion, CONN26, iterations=3) & ~lesion
            assert int((near & (noisy > 0) & (truth == 0)).sum()) >= e["voxels"]
        elif e["kind"] == "spurious":
            blob, _ = ndi.label((noisy > 0) & (truth == 0) & ~ndi.binary_dilation(
                truth > 0, CONN26, iterations=2), structure=CONN26)
            at = blob[tuple(e["centre_vox"])]
            assert at > 0 and np.all(noisy[blob == at] == 2)
            assert 150 <= e["volume_mm3"] <= 500 + 8 * e["voxels"]
        elif e["kind"] == "systematic-dilate":
            assert e["magnitude_mm"] == 2.0
            assert int(((noisy > 0) & (truth == 0)).sum()) >= e["voxels"]


def test_added_voxels_stay_in_the_brain(written: dict) -> None:
    total = 0
    for cid, noisy in written["noisy"].items():
        added = (noisy > 0) & (written["truth"][cid] == 0)
        total += int(added.sum())
        assert np.all(written["flair"][cid][added] != 0)
    assert total > 0


def test_same_seed_writes_the_same_errors_and_the_cli_says_where(
        written: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from napari_calf._cli.main import main

    out = tmp_path / "again"
    assert main(["phantom", str(out), "--cases", str(N), "--seed", str(SEED), "--label-errors",
                 SPEC, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "label_errors.json" in printed and "truth" in printed and "systematic-dilate" in printed
    assert json.loads((out / "label_errors.json").read_text()) == written["doc"]
    for c in written["cases"]:
        assert np.array_equal(_read(out / c.case_id / c.label.name), written["noisy"][c.case_id])


def test_a_bad_spec_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    from napari_calf._cli.main import main

    assert main(["phantom", str(tmp_path / "x"), "--cases", "1", "--label-errors",
                 "dilate=0.2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "dilate" in err and "Fix" in err and not (tmp_path / "x").exists()
