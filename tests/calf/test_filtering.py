"""Dataset filtering: counts, the per-slice report, seeded sampling, min_area, outliers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_calf.errors import CalfConfigError
from napari_calf.calf.areas import DatasetAreas
from napari_calf.calf.filtering import filter_slices
from napari_calf.calf.stats import imbalance_stats


def _areas(values, unit="px") -> DatasetAreas:
    values = np.asarray(values, dtype=float)
    n = values.size
    case_ids = np.array([f"case{i // 10}" for i in range(n)])
    return DatasetAreas(case_ids, np.arange(n) % 10, values, unit)


@pytest.fixture
def dataset() -> DatasetAreas:
    # 20 empty slices, 10 with foreground: 2 tiny (3, 4 px), 7 ordinary, one huge (5000 px).
    values = [0.0] * 20 + [3, 4, 100, 110, 120, 130, 140, 150, 160, 5000]
    return _areas(np.random.default_rng(0).permutation(values))


def test_defaults_keep_all_foreground_and_a_tenth_of_empty(dataset):
    res = filter_slices(dataset)
    fg = dataset.areas > 0
    assert res.keep[fg].all()
    assert np.count_nonzero(res.keep & ~fg) == 2  # 10 % of 20 empty slices
    s = res.summary()
    assert s == {
        "slices": 30, "kept": 12, "dropped": 18, "flagged": 0,
        "kept_foreground": 10, "kept_empty": 2, "dropped_empty": 18, "dropped_small": 0,
        "flagged_outliers": 0, "dropped_outliers": 0, "outlier_threshold": None,
    }
    # every dropped slice here is empty: counted and explained once, not listed one by one
    # (a BraTS-size dataset has ~150,000 of them)
    assert res.report == []
    assert np.count_nonzero(~res.keep & ~fg) == 18
    assert "empty slice" in res.empty_reason and "seed 0" in res.empty_reason
    json.dumps(res.summary())


def test_empty_sampling_is_reproducible_with_the_seed(dataset):
    a = filter_slices(dataset, empty_fraction=0.5, seed=7)
    b = filter_slices(dataset, empty_fraction=0.5, seed=7)
    np.testing.assert_array_equal(a.keep, b.keep)
    assert np.count_nonzero(a.keep & (dataset.areas == 0)) == 10
    others = [filter_slices(dataset, empty_fraction=0.5, seed=s).keep for s in range(1, 6)]
    assert any(not np.array_equal(a.keep, k) for k in others)


@pytest.mark.parametrize(("fraction", "n_empty_kept"), [(0.0, 0), (1.0, 20), (0.33, 7)])
def test_empty_fraction_edges(dataset, fraction, n_empty_kept):
    res = filter_slices(dataset, empty_fraction=fraction)
    assert np.count_nonzero(res.keep & (dataset.areas == 0)) == n_empty_kept
    assert res.summary()["kept_empty"] == n_empty_kept


def test_min_area_drops_small_slices_and_lists_them_for_review(dataset):
    res = filter_slices(dataset, empty_fraction=1.0, min_area=10)
    small = (dataset.areas > 0) & (dataset.areas < 10)
    assert not res.keep[small].any()
    assert res.keep[~small].all()
    rows = [r for r in res.report if r["area"] > 0]
    assert sorted(r["area"] for r in rows) == [3.0, 4.0]
    assert all(r["action"] == "dropped" for r in rows)
    assert "min_area 10 px" in rows[0]["reason"] and "annotation noise" in rows[0]["reason"]
    assert res.summary()["dropped_small"] == 2
    # min_area equal to an area keeps that slice (strictly smaller is dropped).
    assert filter_slices(dataset, min_area=4).summary()["dropped_small"] == 1


def test_outliers_are_flagged_not_dropped_unless_asked(dataset):
    res = filter_slices(dataset, outlier_iqr=3)
    sizes = dataset.areas[dataset.areas > 0]
    q1, q3 = np.percentile(sizes, [25, 75])
    assert res.outlier_threshold == pytest.approx(q3 + 3 * (q3 - q1))
    huge = dataset.areas == 5000
    assert res.flagged[huge].all() and np.count_nonzero(res.flagged) == 1
    assert res.keep[huge].all()  # flagged only
    row = next(r for r in res.report if r["area"] == 5000)
    assert row["action"] == "flagged" and "Q3 + 3·IQR" in row["reason"]
    assert res.summary()["flagged_outliers"] == 1 and res.summary()["dropped_outliers"] == 0

    dropped = filter_slices(dataset, outlier_iqr=3, drop_outliers=True)
    assert not dropped.keep[huge].any()
    assert next(r for r in dropped.report if r["area"] == 5000)["action"] == "dropped"
    assert dropped.summary()["dropped_outliers"] == 1


def test_filtered_areas_feed_the_statistics(dataset):
    res = filter_slices(dataset, min_area=10, outlier_iqr=3, drop_outliers=True, empty_fraction=0)
    kept = res.apply(dataset)
    assert sorted(kept.areas.tolist()) == [100, 110, 120, 130, 140, 150, 160]
    stats = imbalance_stats(kept)
    assert stats.n == 7 and stats.n_empty == 0


def test_units_are_named_in_the_report():
    res = filter_slices(_areas([0, 2.5, 50, 60, 70], unit="mm2"), min_area=5)
    assert "2.5 mm² < min_area 5 mm²" in res.report[-1]["reason"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"empty_fraction": 1.5}, r"empty_fraction = 1.5 is out of range.*\[0, 1\]"),
        ({"empty_fraction": -0.1}, r"empty_fraction"),
        ({"empty_fraction": "0.1"}, r"empty_fraction must be a number"),
        ({"min_area": -1}, r"min_area = -1"),
        ({"outlier_iqr": 0}, r"outlier_iqr = 0"),
        ({"outlier_iqr": float("nan")}, r"outlier_iqr"),
        ({"drop_outliers": True}, r"drop_outliers=True needs outlier_iqr"),
        ({"seed": -3}, r"seed must be an integer"),
        ({"seed": 1.5}, r"seed must be an integer"),
    ],
)
def test_bad_settings_are_refused_with_a_fix(dataset, kwargs, expected):
    with pytest.raises(CalfConfigError, match=expected):
        filter_slices(dataset, **kwargs)


def test_needs_dataset_areas():
    with pytest.raises(CalfConfigError, match="DatasetAreas"):
        filter_slices(np.array([1.0, 2.0]))
