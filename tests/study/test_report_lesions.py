"""The study report's lesion-wise columns: summary.csv/json, README table, paired test.

Evaluations are made by hand (no training): two cases per run whose lesion-wise numbers
are chosen, so every summary value is a small sum worked out below.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_calf.study.compare import run_name
from napari_calf.study.evaluation import RunEvaluation
from napari_calf.study.report import summarise, write_report


def _case(cid: str, dice: float, hd: float, tp: int, fp: int, fn: int) -> dict:
    den = 2 * tp + fp + fn
    return {"case_id": cid, "dice": 0.5, "iou": 1 / 3, "hd95_mm": 10.0, "empty_slices": 2,
            "fp_empty_slices": 0, "lesion_dice": dice, "lesion_hd95_mm": hd,
            "lesion_tp": tp, "lesion_fp": fp, "lesion_fn": fn,
            "lesion_f1": 2 * tp / den if den else 1.0, "lesion_ignored_gt": 0, "lesions": []}


def _record(loss: str, seed: int, cases: list[dict], convention: str = "monai") -> SimpleNamespace:
    ev = RunEvaluation(
        run_dir="r", data_dir="d", target="wt", cases=cases,
        slices={"case_id": np.array(["a", "a"]), "slice": np.arange(2),
                "dice": np.array([0.5, 1.0]), "gt_area": np.array([4.0, 0.0]),
                "pred_area": np.array([4.0, 0.0])},
        size_edges=(1.0, 10.0), hd95_convention=convention)
    card = {"data": {"selection": {"transform": "ln", "reason": "r"},
                     "statistics": {"skewness": 2.0, "kurtosis": 5.0, "n": 30}},
            "config": {"data": {"target": "wt"}}}
    return SimpleNamespace(name=run_name("unet", loss, seed), arch="unet", loss=loss, seed=seed,
                           evaluation=ev, card=card, selection=card["data"]["selection"],
                           statistics=card["data"]["statistics"])


def _records() -> list[SimpleNamespace]:
    # calf, seed 0: case a finds its 2 lesions (one FP too), case b has nothing to find
    # and finds nothing (F1 1 on its own, but it adds no count to the pooled F1)
    return [
        _record("calf", 0, [_case("a", 0.6, 130.0, 2, 1, 0), _case("b", 1.0, 0.0, 0, 0, 0)]),
        _record("calf", 1, [_case("a", 0.8, 20.0, 1, 0, 1), _case("b", 0.0, 374.0, 0, 1, 0)]),
        _record("bce", 0, [_case("a", 0.2, 250.0, 1, 2, 1), _case("b", 0.0, 374.0, 0, 1, 0)]),
        _record("bce", 1, [_case("a", 0.4, 200.0, 1, 1, 1), _case("b", 1.0, 0.0, 0, 0, 0)]),
    ]


def test_summary_has_lesion_columns_with_hand_worked_values() -> None:
    s = summarise(_records())
    per_run = {(r["loss"], r["seed"]): r for r in s["per_run"]}
    calf0 = per_run[("calf", 0)]
    assert calf0["lesion_dice"] == pytest.approx((0.6 + 1.0) / 2)
    assert calf0["lesion_hd95_mm"] == pytest.approx(65.0)
    # pooled: TP 2, FP 1, FN 0 -> 4 / 5, not the mean of the case F1s (0.8 and 1)
    assert calf0["lesion_f1"] == pytest.approx(4 / 5)
    assert (calf0["lesion_tp"], calf0["lesion_fp"], calf0["lesion_fn"]) == (2, 1, 0)
    assert calf0["lesion_region"] == "wt" and calf0["hd95_convention"] == "monai"
    calf1_f1 = 2 / (2 + 1 + 1)  # TP 1, FP 1, FN 1
    row = {r["loss"]: r for r in s["rows"]}["calf"]
    assert row["lesion_dice_mean"] == pytest.approx(np.mean([0.8, 0.4]))
    assert row["lesion_dice_sd"] == pytest.approx(np.std([0.8, 0.4], ddof=1))
    assert row["lesion_hd95_mm_mean"] == pytest.approx(np.mean([65.0, 197.0]))
    assert row["lesion_f1_mean"] == pytest.approx(np.mean([0.8, calf1_f1]))


def test_report_files_carry_the_lesion_columns(tmp_path: Path) -> None:
    summary = write_report(tmp_path, _records(), plots=False, n_resamples=200)
    with open(tmp_path / "summary.csv", newline="") as fh:
        rows = {r["loss"]: r for r in csv.DictReader(fh)}
    for col in ("lesion_dice_mean", "lesion_dice_sd", "lesion_hd95_mm_mean", "lesion_f1_mean"):
        assert col in rows["calf"], col
    assert float(rows["bce"]["lesion_dice_mean"]) == pytest.approx(np.mean([0.1, 0.7]))
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert "lesion_dice, lesion_hd95_mm" in stored["definitions"]
    assert "monai" in stored["definitions"]["hd95 convention"]
    # paired lesion-wise Dice over (seed, case): calf − bce = 0.4, 1.0, 0.4, −1.0
    paired = [p for p in summary["paired"] if p["metric"] == "case lesion-wise Dice"]
    assert len(paired) == 1 and paired[0]["n_pairs"] == 4
    assert paired[0]["mean_diff"] == pytest.approx(np.mean([0.4, 1.0, 0.4, -1.0]))
    assert summary["paired"][0]["metric"] == "case Dice"  # the first comparison stays
    readme = (tmp_path / "README.md").read_text()
    assert "| lesion-wise Dice | lesion-wise HD95 (mm) | lesion F1 |" in readme
    calf_line = next(line for line in readme.splitlines() if line.startswith("| unet | calf |"))
    assert calf_line.endswith(f"| {np.mean([0.8, 0.4]):.3f} ± {np.std([0.8, 0.4], ddof=1):.3f}"
                              f" | {np.mean([65.0, 197.0]):.1f} ± "
                              f"{np.std([65.0, 197.0], ddof=1):.1f} | "
                              f"{np.mean([0.8, 0.5]):.3f} ± {np.std([0.8, 0.5], ddof=1):.3f} |")
    assert "BraTS 2023" in readme and "(`wt`;" in readme and "HD95 convention: `monai`" in readme


def test_evaluations_round_trip_and_old_ones_are_refused() -> None:
    ev = _records()[0].evaluation
    back = RunEvaluation.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert back.hd95_convention == "monai" and back.lesion_settings == ev.lesion_settings
    assert back.cases == ev.cases
    # an evaluation cached before lesion-wise scores existed: collect evaluates again,
    # because iter_collect treats a KeyError from from_dict as a stale cache
    old = ev.to_dict()
    del old["hd95_convention"], old["lesion_settings"]
    with pytest.raises(KeyError):
        RunEvaluation.from_dict(old)


def test_collect_evaluates_again_a_run_cached_before_lesion_scores(tmp_path: Path,
                                                                   monkeypatch) -> None:
    from napari_calf.events import drain
    from napari_calf.study import evaluation
    from napari_calf.study.collect import _evaluation_key, iter_collect

    run = tmp_path / "study" / "runs" / "unet__calf__seed0"
    run.mkdir(parents=True)
    card = {"status": "finished", "config": {"data": {"data_dir": str(tmp_path)}},
            "data": {"split": {"val": ["a", "b"]}}}
    (run / "run.json").write_text(json.dumps(card))
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(4, np.float32)}, str(run / "model.safetensors"))  # readable weights
    fresh = _records()[0].evaluation
    old = json.loads(json.dumps(fresh.to_dict()))  # a copy: the case dicts are shared
    del old["hd95_convention"], old["lesion_settings"]
    for c in old["cases"]:
        for key in [k for k in c if k.startswith("lesion")]:
            del c[key]
    cache = tmp_path / "study" / "evaluations" / "unet__calf__seed0.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({"run": run.name, "key": _evaluation_key(run, card),
                                 "evaluation": old}))
    calls = []

    def fake_evaluate(run_dir, data_dir, **kwargs):
        calls.append(Path(run_dir).name)
        return fresh
        yield  # a generator, like the real one

    monkeypatch.setattr(evaluation, "iter_evaluate_run", fake_evaluate)
    records, _notes = drain(iter_collect(tmp_path / "study"))
    assert calls == ["unet__calf__seed0"]
    assert records[0].evaluation.cases[0]["lesion_dice"] == 0.6
    stored = json.loads(cache.read_text())["evaluation"]
    assert stored["hd95_convention"] == "monai" and "lesion_dice" in stored["cases"][0]
    # the refreshed cache is used as it is next time
    drain(iter_collect(tmp_path / "study"))
    assert calls == ["unet__calf__seed0"]
