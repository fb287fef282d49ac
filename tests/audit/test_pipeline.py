"""``napari-calf audit`` end to end on a tiny dataset with one known spurious label.

One module-scoped audit (2 folds of a 3-epoch tiny U-Net, with test-time flips) is run
through the CLI; the tests read its folder, resume it, redo a lost fold, and reuse one
of its runs. The whole file takes well under a minute of CPU time on 2 cores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_calf._cli.main import main

pytestmark = pytest.mark.slow

CONTRACT_KEYS = {"id", "rank", "case_id", "kind", "score", "slices", "volume_mm3", "centre_vox",
                 "centre_mm", "component", "magnitude_mm", "detail", "bbox", "in_sample"}
EPOCHS = ["--epochs", "3"]


def _audit_argv(data: Path, out: Path, *extra: str) -> list[str]:
    from _audit_data import TRAIN_OPTS  # tests/_audit_data.py

    opts = list(TRAIN_OPTS)
    opts[opts.index("--epochs") + 1] = EPOCHS[1]
    return ["audit", str(data), "--out", str(out), "--folds", "2", "--tta", "--no-progress",
            *opts, *extra]


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The audit run by the core generator (training in process); the CLI resumes it below."""
    from _audit_data import write_noisy_dataset

    from napari_calf._cli.audit import make_audit_plan
    from napari_calf._cli.main import build_parser
    from napari_calf.audit.pipeline import iter_run_audit
    from napari_calf.events import Progress

    root = tmp_path_factory.mktemp("audit")
    data = write_noisy_dataset(root / "data")
    out = root / "audit"
    plan, _ = make_audit_plan(build_parser().parse_args(_audit_argv(data, out)))
    events = []
    gen = iter_run_audit(plan, tta=True, device="cpu")
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            result = done.value
            break
    stages = [e.stage for e in events if isinstance(e, Progress)]
    assert stages.count("predict") == 4 and stages.count("score") == 4
    return {"data": data, "out": out, "result": result}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_issues_follow_the_contract_and_the_spurious_blob_ranks_first(audit: dict) -> None:
    from _audit_data import BLOB

    from napari_calf.audit.scoring import ISSUE_KINDS

    doc = _json(audit["out"] / "issues.json")
    rows = doc["issues"]
    assert rows == json.loads(json.dumps(audit["result"].rows))
    assert rows and {"median_mm", "sentence", "per_case_mm"} <= set(doc["dataset_bias"])
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == CONTRACT_KEYS
        assert r["kind"] in ISSUE_KINDS and 0 <= r["score"] <= 1 and r["in_sample"] is False
        case, kind, n = r["id"].split("/")
        assert (case, kind) == (r["case_id"], r["kind"]) and int(n) >= 1
        # bbox is [start, stop) per axis; its z range is the inclusive slice range
        assert r["bbox"][2] == [r["slices"][0], r["slices"][1] + 1]
        assert all(lo <= c < hi for c, (lo, hi) in zip(r["centre_vox"], r["bbox"]))
        # centre_mm is the world position: the affine is diag(2, 2, 2)
        assert r["centre_mm"] == [2.0 * c for c in r["centre_vox"]]
    top = rows[0]
    assert (top["case_id"], top["kind"]) == (BLOB["case_id"], "spurious")
    assert top["slices"] == list(BLOB["z"])
    assert [top["bbox"][0], top["bbox"][1]] == [list(BLOB["x"]), list(BLOB["y"])]
    with open(audit["out"] / "issues.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["id"] for t in table] == [r["id"] for r in rows]
    assert json.loads(table[0]["bbox"]) == top["bbox"]


def test_summary_scores_the_top_k_against_the_injected_error(audit: dict) -> None:
    summary = _json(audit["out"] / "summary.json")
    rows = _json(audit["out"] / "issues.json")["issues"]
    assert summary["n_cases"] == 4 and summary["n_issues"] == len(rows)
    assert sum(summary["counts"].values()) == len(rows)
    truth = summary["truth"]  # found automatically: DATA/truth + DATA/label_errors.json
    assert truth["truth_dir"] == str((audit["data"] / "truth").resolve())
    top = truth["top_k"]
    assert (top["k"], top["n_injected"], top["true_positives"]) == (1, 1, 1)
    assert top["per_injected_kind"]["spurious"]["recall"] == 1.0
    assert truth["systematic_bias"]["injected_mm"] == 0.0
    assert truth["systematic_bias"]["estimated_mm"] == pytest.approx(
        summary["dataset_bias"]["median_mm"])


def test_audit_json_and_predictions_overlay_each_label(audit: dict) -> None:
    import nibabel as nib

    doc = _json(audit["out"] / "audit.json")
    assert doc["version"] == 1 and doc["folds"] == 2 and doc["tta"] is True
    assert doc["runs"] == {"0": "runs/fold0", "1": "runs/fold1"}
    assert Path(doc["data_dir"]) == audit["data"].resolve()
    folds = [info["fold"] for info in doc["cases"].values()]
    assert sorted(folds) == [0, 0, 1, 1]
    for cid, info in doc["cases"].items():
        assert info["in_sample"] is False and Path(info["label"]).is_file()
        assert info["label_convention"] == "brats2021" and set(info["images"]) == {
            "t1", "t1ce", "t2", "flair"}
        card = _json(audit["out"] / doc["runs"][str(info["fold"])] / "run.json")
        assert cid in card["data"]["split"]["val"] and cid not in card["data"]["split"]["train"]
        prob = nib.load(audit["out"] / info["prediction"])
        label = nib.load(info["label"])
        assert prob.shape == label.shape and np.allclose(prob.affine, label.affine)
        values = np.asarray(prob.dataobj)
        assert values.dtype == np.float32 and 0 <= values.min() and values.max() <= 1
        assert (audit["out"] / "predictions" / f"{cid}_std.nii.gz").is_file()  # 4 flips
    png = (audit["out"] / "top_issues.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_finished_folds_and_predictions_and_redoes_a_lost_fold(
        audit: dict, capsys: pytest.CaptureFixture) -> None:
    import shutil

    out = audit["out"]
    doc = _json(out / "audit.json")
    fold1_cases = sorted(c for c, i in doc["cases"].items() if i["fold"] == 1)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "predictions").glob("*_prob.nii.gz")}
    weights0 = (out / "runs" / "fold0" / "model.safetensors").stat().st_mtime_ns
    before = _json(out / "issues.json")
    capsys.readouterr()
    assert main(_audit_argv(audit["data"], out)) == 0
    printed = capsys.readouterr().out
    assert "[1/2] fold0: skip" in printed and "[2/2] fold1: skip" in printed
    assert {p.name: p.stat().st_mtime_ns for p in (out / "predictions").glob("*_prob.nii.gz")} == stamps
    assert _json(out / "issues.json") == before

    shutil.rmtree(out / "runs" / "fold1")  # a lost fold: trained and predicted again
    assert main(_audit_argv(audit["data"], out)) == 0
    printed = capsys.readouterr().out
    assert "[1/2] fold0: skip" in printed and "[2/2] fold1: start" in printed
    assert (out / "runs" / "fold0" / "model.safetensors").stat().st_mtime_ns == weights0
    now = {p.name: p.stat().st_mtime_ns for p in (out / "predictions").glob("*_prob.nii.gz")}
    redone = sorted(n.removesuffix("_prob.nii.gz") for n in now if now[n] != stamps[n])
    assert redone == fold1_cases


def test_other_folds_for_the_same_folder_are_refused(audit: dict, capsys) -> None:
    argv = _audit_argv(audit["data"], audit["out"])
    argv[argv.index("--folds") + 1] = "3"
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "other" in err and "--out" in err and "Traceback" not in err


def test_reused_runs_mark_the_cases_they_trained_on_as_in_sample(
        audit: dict, tmp_path: Path) -> None:
    run0 = audit["out"] / "runs" / "fold0"
    card = _json(run0 / "run.json")
    trained = set(card["data"]["split"]["train"])
    out = tmp_path / "reused"
    assert main(["audit", str(audit["data"]), "--out", str(out), "--runs", str(run0),
                 "--no-progress", "--no-figure", "--device", "cpu"]) == 0
    doc = _json(out / "audit.json")
    assert doc["runs"] == {"0": str(run0.resolve())} and doc["folds"] is None
    for cid, info in doc["cases"].items():
        assert info["in_sample"] is (cid in trained)
        assert info["fold"] == (None if cid in trained else 0)
    rows = _json(out / "issues.json")["issues"]
    assert all(r["in_sample"] is (r["case_id"] in trained) for r in rows)
    summary = _json(out / "summary.json")
    assert summary["n_in_sample"] == len(trained) and summary["reused_runs"] is True


def test_accepting_the_top_suggestion_restores_the_clean_label(audit: dict, tmp_path: Path) -> None:
    import shutil

    from _audit_data import BLOB

    from napari_calf.audit.accept import accept_top_issues
    from napari_calf.io.volumes import load_volume

    out = tmp_path / "copy"  # the other tests read the audit as it is
    shutil.copytree(audit["out"], out, ignore=shutil.ignore_patterns("runs"))
    decisions = accept_top_issues(out, k=1)
    cid = BLOB["case_id"]
    assert [(d["case_id"], d["decision"]) for d in decisions] == [(cid, "use-suggestion")]
    record = _json(out / "corrections" / "corrections.json")
    assert record["decisions"] == decisions
    fixed = load_volume(out / "corrections" / cid / f"{cid}_seg.nii.gz", label=True)
    truth = load_volume(audit["data"] / "truth" / cid / f"{cid}_seg.nii.gz", label=True)
    original = load_volume(audit["data"] / cid / f"{cid}_seg.nii.gz", label=True)
    assert np.array_equal(fixed.data, truth.data) and fixed.data.dtype == original.data.dtype
    assert decisions[0]["voxels_changed"] == int((original.data != truth.data).sum())
    assert accept_top_issues(out, k=1)[0]["voxels_changed"] == 0  # decided again: replaced
    assert len(_json(out / "corrections" / "corrections.json")["decisions"]) == 1
