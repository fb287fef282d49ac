"""Audit rows and truth scoring on hand-made issues (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_calf.audit.report import issue_rows, truth_report
from napari_calf.audit.scoring import AuditIssue


def _issue(case: str, kind: str, score: float, slices: tuple[int, int],
           bbox: tuple[tuple[int, int], ...], centre: tuple[int, int, int]) -> AuditIssue:
    return AuditIssue(case_id=case, kind=kind, score=score, slices=slices, volume_mm3=64.0,
                      centre_vox=centre, centre_mm=(0.0, 0.0, 0.0), component=None,
                      magnitude_mm=None, detail="", bbox=bbox)


ISSUES = [  # ranked by score
    _issue("a", "missed", 0.9, (5, 6), ((1, 2), (1, 2), (5, 6)), (1, 1, 5)),
    _issue("b", "spurious", 0.8, (0, 1), ((3, 4), (3, 4), (0, 1)), (3, 3, 0)),
    _issue("a", "missed", 0.7, (1, 2), ((7, 8), (7, 8), (1, 2)), (7, 7, 1)),
]


def test_rows_number_each_case_and_kind_by_position_and_use_world_millimetres() -> None:
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = (-10, 5, 0)
    rows = issue_rows(ISSUES, {"a": affine, "b": np.eye(4)}, {"b": True})
    assert [r["id"] for r in rows] == ["a/missed/2", "b/spurious/1", "a/missed/1"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["centre_mm"] == [-8.0, 8.0, 20.0]  # affine @ (1, 1, 5, 1)
    assert rows[0]["bbox"] == [[1, 3], [1, 3], [5, 7]]  # stop exclusive
    assert [r["in_sample"] for r in rows] == [False, True, False]
    # the ids follow positions, not scores: re-scored issues keep their ids
    rescored = [ISSUES[2], ISSUES[0], ISSUES[1]]
    assert {r["id"] for r in issue_rows(rescored, {}, {})} == {r["id"] for r in rows}


def test_truth_report_counts_the_top_k_per_kind_and_the_bias_error() -> None:
    injected = {"spec": "x", "seed": 1, "errors": [
        {"case_id": "a", "kind": "missed", "slices": [5, 6], "centre_vox": [1, 1, 5], "voxels": 8},
        {"case_id": "a", "kind": "erased-slices", "slices": [1, 2], "centre_vox": [7, 7, 1],
         "voxels": 8},
        {"case_id": "c", "kind": "dilate", "slices": [3, 3], "centre_vox": [0, 0, 3], "voxels": 8},
        {"case_id": "a", "kind": "systematic-dilate", "slices": [1, 6], "centre_vox": [4, 4, 3],
         "voxels": 40, "magnitude_mm": 2.0}]}
    report = truth_report(ISSUES, injected, {"median_mm": 1.6, "systematic": True})
    top = report["top_k"]
    # k = 3 (systematic-dilate is judged by the bias); ranks 1 and 3 match, rank 2 does not
    assert (top["k"], top["true_positives"]) == (3, 2)
    assert top["precision"] == pytest.approx(2 / 3) and top["recall"] == pytest.approx(2 / 3)
    assert top["per_injected_kind"]["missed"]["recall"] == 1.0
    assert top["per_injected_kind"]["erased-slices"]["recall"] == 1.0
    assert top["per_injected_kind"]["dilate"]["recall"] == 0.0
    bias = report["systematic_bias"]
    assert bias["injected_mm"] == 2.0 and bias["error_mm"] == pytest.approx(-0.4)
    assert bias["detected_as_systematic"] is True and bias["n_cases_dilated"] == 1
