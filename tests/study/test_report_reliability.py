"""The study report when things are not as planned, and its bootstrap intervals.

- One damaged run no longer blocks the report: the good runs are reported, the damaged
  one is listed with what is wrong, and a rerun trains it again (fault 10).
- The report never replaces a file the study did not write itself (fault 8).
- The paired intervals come from ``scipy.stats.bootstrap`` in batches, resampling cases
  (with all their slices) when pairs are clustered in cases (issue 13).

Studies here are fakes on disk (run cards, tiny safetensors, cached evaluations): no
training, so every test takes well under a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_calf.errors import CalfCheckpointError, CalfInputError
from napari_calf.events import drain
from napari_calf.study.collect import _evaluation_key, iter_collect
from napari_calf.study.compare import run_status
from napari_calf.study.evaluation import RunEvaluation
from napari_calf.study.report import bootstrap_ci, paired_comparisons, write_report


# --------------------------------------------------------------------------- a fake study


def _evaluation(dice: list[float]) -> RunEvaluation:
    n = len(dice)
    return RunEvaluation(
        run_dir="r", data_dir="d", target="wt",
        cases=[{"case_id": f"c{i}", "dice": v, "iou": v / (2 - v), "hd95_mm": 10 * (1 - v),
                "empty_slices": 2, "fp_empty_slices": 0} for i, v in enumerate(dice)],
        slices={"case_id": np.array([f"c{i}" for i in range(n)]), "slice": np.zeros(n, int),
                "dice": np.array(dice), "gt_area": np.full(n, 5.0), "pred_area": np.full(n, 5.0)},
        size_edges=(10.0, 100.0))


def _fake_run(study: Path, name: str, loss: str, dice: list[float]) -> Path:
    from safetensors.numpy import save_file

    folder = study / "runs" / name
    folder.mkdir(parents=True)
    card = {"status": "finished", "best": {"epoch": 1, "dice": 0.5},
            "config": {"train": {"loss": loss}, "data": {"data_dir": str(study)}},
            "data": {"split": {"val": [f"c{i}" for i in range(len(dice))]},
                     "selection": {"transform": "ln", "reason": "S >= 1"},
                     "statistics": {"skewness": 1.5, "kurtosis": 2.0, "n": 30}}}
    (folder / "run.json").write_text(json.dumps(card))
    save_file({"w": np.zeros(64, np.float32)}, str(folder / "model.safetensors"))
    cache = study / "evaluations" / f"{name}.json"
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(json.dumps({"run": name, "key": _evaluation_key(folder, card),
                                 "evaluation": _evaluation(dice).to_dict()}))
    return folder


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    (root).mkdir()
    (root / "study.json").write_text(json.dumps({"losses": ["calf", "bce"], "archs": ["unet"]}))
    for seed in (0, 1):
        _fake_run(root, f"unet__calf__seed{seed}", "calf", [0.8, 0.7, 0.75])
        _fake_run(root, f"unet__bce__seed{seed}", "bce", [0.7, 0.6, 0.7])
    return root


# --------------------------------------------------------------------------- fault 10


def test_a_run_with_truncated_weights_is_listed_and_the_others_reported(study: Path) -> None:
    weights = study / "runs" / "unet__bce__seed1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a copy that stopped half-way
    records, notes = drain(iter_collect(study, device="cpu"))
    assert sorted(r.name for r in records) == ["unet__bce__seed0", "unet__calf__seed0",
                                               "unet__calf__seed1"]
    (note,) = [n for n in notes if n.startswith("unet__bce__seed1")]
    assert "damaged" in note and "model.safetensors" in note and "trained again" in note
    summary = write_report(study, records, notes=notes, plots=False)
    assert {r["loss"]: r["n_seeds"] for r in summary["rows"]} == {"calf": 2, "bce": 1}
    assert "unet__bce__seed1: damaged" in (study / "README.md").read_text()
    # and the study's rerun trains it again instead of skipping it as finished
    assert run_status(weights.parent) == "restart"
    assert run_status(study / "runs" / "unet__bce__seed0") == "finished"


def test_a_run_that_fails_to_evaluate_is_listed_and_the_others_reported(study: Path,
                                                                       monkeypatch) -> None:
    import napari_calf.study.evaluation as evaluation

    (study / "evaluations" / "unet__calf__seed1.json").unlink()  # must be evaluated again

    def broken(run_dir, *a, **kw):
        raise CalfCheckpointError(f"{run_dir}/model.safetensors: weights do not fit the model.")
        yield  # a generator, like the real one

    monkeypatch.setattr(evaluation, "iter_evaluate_run", broken)
    records, notes = drain(iter_collect(study, device="cpu"))
    assert len(records) == 3 and "unet__calf__seed1" not in {r.name for r in records}
    (note,) = [n for n in notes if n.startswith("unet__calf__seed1")]
    assert "weights do not fit the model" in note


def test_a_run_card_that_is_not_an_object_is_listed_not_a_crash(study: Path) -> None:
    (study / "runs" / "unet__calf__seed0" / "run.json").write_text("[1, 2]")
    records, notes = drain(iter_collect(study, device="cpu"))
    assert len(records) == 3
    assert any(n.startswith("unet__calf__seed0") and "run.json" in n for n in notes)
    assert run_status(study / "runs" / "unet__calf__seed0") == "restart"


# --------------------------------------------------------------------------- fault 8


def _records(study: Path) -> list:
    records, _ = drain(iter_collect(study, device="cpu"))
    return records


def test_the_report_never_replaces_a_users_file(study: Path) -> None:
    readme = study / "README.md"
    readme.write_text("# My notes on this experiment\n")
    with pytest.raises(CalfInputError) as info:
        write_report(study, _records(study), plots=False)
    msg = str(info.value)
    assert "README.md" in msg and "--overwrite" in msg
    assert readme.read_text() == "# My notes on this experiment\n"
    assert not (study / "summary.csv").exists()  # refused before writing anything


def test_the_report_regenerates_its_own_files_but_not_edited_ones(study: Path) -> None:
    records = _records(study)
    write_report(study, records, plots=False)
    write_report(study, records, plots=False)  # its own files: regenerated freely
    summary_csv = study / "summary.csv"
    summary_csv.write_text(summary_csv.read_text() + "my,extra,row\n")
    with pytest.raises(CalfInputError, match=r"summary\.csv .*changed since"):
        write_report(study, records, plots=False)
    assert summary_csv.read_text().endswith("my,extra,row\n")
    write_report(study, records, plots=False, overwrite=True)  # asked: replaced
    assert not summary_csv.read_text().endswith("my,extra,row\n")


def test_reports_of_earlier_versions_are_recognised_as_the_studys(study: Path) -> None:
    """Studies written before the report kept its list of files can still be reported."""
    records = _records(study)
    write_report(study, records, plots=False)
    next(study.glob(".*report*.json")).unlink()
    write_report(study, records, plots=False)


# --------------------------------------------------------------------------- issue 13


def _reference_percentile_ci(values: np.ndarray, clusters: np.ndarray, n: int,
                             seed: int) -> tuple[float, float]:
    """The textbook cluster bootstrap, written out: resample cases, keep all their slices."""
    rng = np.random.default_rng(seed)
    ids = np.unique(clusters)
    groups = [values[clusters == c] for c in ids]
    means = np.empty(n)
    for b in range(n):
        pick = rng.integers(0, ids.size, ids.size)
        means[b] = np.concatenate([groups[i] for i in pick]).mean()
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def test_bootstrap_agrees_with_a_hand_written_reference() -> None:
    rng = np.random.default_rng(7)
    d = rng.normal(0.05, 0.1, 40)
    lo, hi = bootstrap_ci(d, n_resamples=20000, seed=2)
    ref_lo, ref_hi = _reference_percentile_ci(d, np.arange(d.size), 20000, seed=5)
    width = ref_hi - ref_lo
    assert lo == pytest.approx(ref_lo, abs=0.05 * width)
    assert hi == pytest.approx(ref_hi, abs=0.05 * width)


def test_cluster_bootstrap_agrees_with_a_hand_written_reference() -> None:
    rng = np.random.default_rng(8)
    sizes = [3, 9, 5, 12, 4, 7, 6, 10]
    clusters = np.repeat(np.arange(len(sizes)), sizes)
    d = rng.normal(0, 1, len(sizes))[clusters] + rng.normal(0, 0.3, clusters.size)
    lo, hi = bootstrap_ci(d, clusters=clusters, n_resamples=20000, seed=3)
    ref_lo, ref_hi = _reference_percentile_ci(d, clusters, 20000, seed=4)
    width = ref_hi - ref_lo
    assert lo == pytest.approx(ref_lo, abs=0.05 * width)
    assert hi == pytest.approx(ref_hi, abs=0.05 * width)


def test_resampling_cases_widens_the_interval_when_slices_of_a_case_agree() -> None:
    rng = np.random.default_rng(9)
    clusters = np.repeat(np.arange(30), 20)  # 30 cases x 20 slices
    correlated = rng.normal(0, 1, 30)[clusters] + rng.normal(0, 0.1, clusters.size)
    independent = rng.normal(0, 1, clusters.size)

    def width(d: np.ndarray, **kw) -> float:
        lo, hi = bootstrap_ci(d, n_resamples=2000, seed=0, **kw)
        return hi - lo

    # slices of a case carry one case's effect: 30 cases of information, not 600 slices
    assert width(correlated, clusters=clusters) > 3 * width(correlated)
    # independent slices: resampling cases changes (almost) nothing
    assert width(independent, clusters=clusters) == pytest.approx(width(independent), rel=0.25)


def test_thirty_thousand_pairs_are_resampled_in_batches(monkeypatch) -> None:
    """No resamples x pairs matrix (2000 x 30,000 indices is 480 MB): scipy gets a batch."""
    from scipy import stats

    seen: list[dict] = []
    real = stats.bootstrap

    def spy(data, statistic, **kw):
        seen.append({"n": len(data[0]), **kw})
        return real(data, statistic, **kw)

    monkeypatch.setattr(stats, "bootstrap", spy)
    rng = np.random.default_rng(1)
    d = rng.normal(0.01, 0.2, 30_000)
    lo, hi = bootstrap_ci(d, n_resamples=2000, seed=0)
    assert lo < d.mean() < hi
    assert seen and all(s["batch"] * s["n"] <= 2**21 for s in seen)
    lo_c, hi_c = bootstrap_ci(d, clusters=np.repeat(np.arange(300), 100), n_resamples=2000)
    assert lo_c < d.mean() < hi_c


def test_fewer_than_two_cases_give_no_interval_rather_than_a_false_one() -> None:
    lo, hi = bootstrap_ci([0.1, 0.3, 0.2], clusters=["c0", "c0", "c0"])
    assert np.isnan(lo) and np.isnan(hi)


def test_the_report_says_how_the_interval_was_computed(study: Path) -> None:
    records = _records(study)
    paired = paired_comparisons(records)
    small = [p for p in paired if p["metric"].startswith("slice Dice")]
    assert small and all("n_cases" in p for p in small)
    write_report(study, records, plots=False, n_resamples=500, seed=3)
    readme = (study / "README.md").read_text()
    assert "not independent" not in readme
    assert "scipy.stats.bootstrap" in readme and "500 resamples" in readme
    assert "resampling validation cases" in readme
