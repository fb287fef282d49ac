"""``napari-calf compare`` end to end on a tiny dataset: a 2-loss × 1-architecture × 2-seed
study, interrupted and resumed, planned, collected and reported.

One module-scoped study is trained (four 1-epoch runs of a 0.5 M-parameter U-Net on
32×32 slices) and every test reads it, so the whole file takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from napari_calf._cli import main as cli
from napari_calf.io.volumes import save_volume

pytestmark = pytest.mark.slow

TRAIN_OPTS = ["--encoder", "tu-resnet10t", "--encoder-depth", "3", "--epochs", "1",
              "--batch-size", "4", "--val-fraction", "0.25", "--device", "cpu",
              "--lr", "0.003"]


def write_tiny_dataset(root: Path, n_cases: int = 4, shape: tuple[int, int, int] = (32, 32, 10),
                       seed: int = 0) -> Path:
    """BraTS-2021-style cases: 4 modalities, a disc of tumour of random size per slice."""
    rng = np.random.default_rng(seed)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for i in range(n_cases):
        cid = f"Tiny_{i:03d}"
        folder = root / cid
        folder.mkdir(parents=True)
        label = np.zeros(shape, np.uint8)
        brain = np.zeros(shape, bool)
        brain[3:-3, 3:-3, :] = True
        for z in range(2, shape[2] - 2):
            r = rng.uniform(1.5, 6.0)
            cx, cy = rng.uniform(10, 22, 2)
            label[..., z][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 2
        for mod in ("t1", "t1ce", "t2", "flair"):
            img = (rng.normal(100, 10, shape) + 80 * (label > 0)).astype(np.float32) * brain
            save_volume(img, folder / f"{cid}_{mod}.nii.gz", affine)
        save_volume(label, folder / f"{cid}_seg.nii.gz", affine)
    return root


def _compare_args(data: Path, study: Path, *extra: str) -> list[str]:
    return ["compare", str(data), "--out", str(study), "--losses", "calf,bce", "--archs", "unet",
            "--seeds", "2", "--no-progress", "--bootstrap", "500", *TRAIN_OPTS, *extra]


def _parse(argv: list[str]) -> argparse.Namespace:
    return cli.build_parser().parse_args(argv)


def _weights_mtimes(study: Path) -> dict[str, int]:
    return {p.name: (p / "model.safetensors").stat().st_mtime_ns
            for p in sorted((study / "runs").iterdir()) if (p / "model.safetensors").exists()}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train the study with the last run stopped mid-epoch, then resume it with the CLI."""
    from napari_calf._cli.compare import make_plan
    from napari_calf.events import drain
    from napari_calf.study.compare import StudyRunEvent, iter_run_study
    from napari_calf.engine.training_events import TrainStep

    root = tmp_path_factory.mktemp("compare")
    data = write_tiny_dataset(root / "data")
    study_dir = root / "study"
    argv = _compare_args(data, study_dir)
    plan, _ = make_plan(_parse(argv))
    # "kill" the 4th run after its first batch (the engine saves a resume point on stop)
    seen = {"last_run": False, "stepped": False}

    def on_event(ev: object) -> None:
        if isinstance(ev, StudyRunEvent) and ev.index == len(plan.runs):
            seen["last_run"] = True
        if isinstance(ev, TrainStep) and seen["last_run"]:
            seen["stepped"] = True

    outcome = drain(iter_run_study(plan, stop=lambda: seen["stepped"]), on_event)
    last = plan.runs[-1]
    card_stopped = json.loads((last.run_dir / "run.json").read_text())
    before = _weights_mtimes(study_dir)
    code = cli.main(argv)
    return {"data": data, "dir": study_dir, "argv": argv, "plan": plan, "outcome": outcome,
            "card_stopped": card_stopped, "mtimes_before": before, "code": code}


def test_interrupted_study_resumes_and_skips_finished_runs(study: dict, capsys) -> None:
    plan = study["plan"]
    names = [r.name for r in plan.runs]
    assert study["outcome"] == {**{n: "done" for n in names[:-1]}, names[-1]: "stopped"}
    assert study["card_stopped"]["status"] == "stopped"
    assert study["card_stopped"]["position"]["batch"] >= 1  # stopped inside its epoch
    assert study["code"] == 0
    after = _weights_mtimes(study["dir"])
    for name in names[:-1]:  # finished runs were not touched
        assert after[name] == study["mtimes_before"][name], name
    card = json.loads((plan.runs[-1].run_dir / "run.json").read_text())
    assert card["status"] == "finished"
    assert len(card["history"]) == 1  # resumed inside epoch 1, not restarted into epoch 2
    assert card["position"]["step"] > study["card_stopped"]["position"]["step"]


def test_compared_runs_share_the_split_and_differ_only_in_the_loss(study: dict) -> None:
    from napari_calf.study.compare import config_differences

    cards = {p.name: json.loads((p / "run.json").read_text())
             for p in (study["dir"] / "runs").iterdir()}
    assert len(cards) == 4
    for seed in (0, 1):
        a, b = cards[f"unet__calf__seed{seed}"], cards[f"unet__bce__seed{seed}"]
        assert a["data"]["split"] == b["data"]["split"]
        assert a["data"]["statistics"] == b["data"]["statistics"]
        assert a["data"]["selection"] == b["data"]["selection"]
        assert a["data"]["filtering"] == b["data"]["filtering"]
        assert config_differences(a["config"], b["config"]) == ["train.loss: 'calf' vs 'bce'"]
    # the seed (only) changes the split
    assert cards["unet__calf__seed0"]["data"]["split"] != cards["unet__calf__seed1"]["data"]["split"]


def test_report_files(study: dict) -> None:
    d = study["dir"]
    with open(d / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["loss"] for r in rows] == ["calf", "bce"]  # the study's order
    for col in ("arch", "n_seeds", "dice_mean", "dice_sd", "iou_mean", "hd95_mm_mean",
                "fp_rate_empty_mean", "dice_small_mean", "dice_medium_mean", "dice_large_mean",
                "calf_selection"):
        assert col in rows[0], col
    for r in rows:
        assert r["n_seeds"] == "2"
        for col in ("dice_mean", "iou_mean", "fp_rate_empty_mean"):
            assert 0.0 <= float(r[col]) <= 1.0
    summary = json.loads((d / "summary.json").read_text())
    assert set(summary["selections"]) == {"0", "1"}
    per_case = summary["paired"][0]
    assert per_case["metric"] == "case Dice" and per_case["n_pairs"] == 2  # 1 val case × 2 seeds
    assert per_case["p_wilcoxon"] is None and "not computable" in per_case["p_note"]
    assert "not distinguishable from noise" in per_case["verdict"]
    readme = (d / "README.md").read_text()
    plan = study["plan"]
    from napari_calf._cli.compare import command_line, run_argv

    args = _parse(study["argv"])
    for r in plan.runs:  # the exact command of every run
        assert command_line(run_argv(args, plan.data_dir, r.run_dir, r.arch, r.loss, r.seed)) in readme
    assert "torch" in readme and "| unet | calf | 2 |" in readme
    # the study's own command, rebuilt in full, gives the same plan
    study_cmd = json.loads((d / "study.json").read_text())["command"]
    assert study_cmd in readme
    from napari_calf._cli.compare import make_plan

    replanned, _ = make_plan(_parse(shlex.split(study_cmd)[1:]))
    assert [r.config for r in replanned.runs] == [r.config for r in plan.runs]
    for png in ("dice_by_size.png", "dice_vs_size.png"):
        assert (d / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_commands_are_the_runs_that_were_trained(study: dict, tmp_path: Path) -> None:
    from napari_calf._cli.train import build_config
    from napari_calf.study.compare import config_differences

    plan_file = tmp_path / "plan.json"
    assert cli.main([*study["argv"], "--plan", str(plan_file)]) == 0
    doc = json.loads(plan_file.read_text())
    assert len(doc["commands"]) == 4 and "--array=0-3" in doc["slurm"]
    train_parser = cli.build_parser()
    for cmd, run in zip(doc["commands"], doc["runs"]):
        argv = shlex.split(cmd)
        assert argv[:2] == ["napari-calf", "train"]
        assert Path(argv[2]).is_absolute()  # self-contained: absolute data path
        config = build_config(train_parser.parse_args(argv[1:]))
        card = json.loads((Path(run["run_dir"]) / "run.json").read_text())
        assert config_differences(config.to_dict(), card["config"]) == []
    # a plan is never written over unless asked
    assert cli.main([*study["argv"], "--plan", str(plan_file)]) == 1


def test_collect_evaluates_runs_that_lack_it(study: dict, tmp_path: Path) -> None:
    d = study["dir"]
    cached = d / "evaluations" / "unet__bce__seed1.json"
    untouched = d / "evaluations" / "unet__calf__seed0.json"
    t_untouched = untouched.stat().st_mtime_ns
    cached.unlink()
    (d / "README.md").unlink()
    assert cli.main(["compare", "--collect", str(d), "--no-progress", "--no-plots",
                     "--device", "cpu"]) == 0
    assert cached.exists() and (d / "README.md").exists()
    assert untouched.stat().st_mtime_ns == t_untouched  # cached evaluations are reused
    ev = json.loads(cached.read_text())["evaluation"]
    card = json.loads((d / "runs" / "unet__bce__seed1" / "run.json").read_text())
    assert [c["case_id"] for c in ev["cases"]] == card["data"]["split"]["val"]


def test_devices_schedule_resumable_and_missing_runs(study: dict, monkeypatch, tmp_path) -> None:
    """--devices hands each unfinished run to the scheduler as a train subprocess."""
    import shutil

    import napari_calf.study.jobs as jobs_mod

    copy = tmp_path / "study"
    shutil.copytree(study["dir"], copy)
    shutil.rmtree(copy / "runs" / "unet__bce__seed1")  # never started
    card_path = copy / "runs" / "unet__calf__seed1" / "run.json"
    card = json.loads(card_path.read_text())
    card["status"] = "stopped"
    card_path.write_text(json.dumps(card))
    seen = {}

    def fake(jobs, devices, *, log_dir, **kw):
        seen.update(jobs=list(jobs), devices=list(devices))
        return {}
        yield  # a generator, like the real one

    monkeypatch.setattr(jobs_mod, "iter_run_commands", fake)
    argv = _compare_args(study["data"], copy, "--devices", "cpu,cpu", "--no-plots")
    assert cli.main(argv) == 0  # reports on the runs that did finish
    assert seen["devices"] == ["cpu", "cpu"]
    jobs = dict(seen["jobs"])
    assert set(jobs) == {"unet__calf__seed1", "unet__bce__seed1"}
    assert jobs["unet__calf__seed1"][-2:] == ["--resume", str(copy.resolve() / "runs" / "unet__calf__seed1")]
    fresh = jobs["unet__bce__seed1"]
    assert fresh[fresh.index("train") + 1] == str(Path(study["data"]).resolve())
    assert fresh[fresh.index("--loss") + 1] == "bce" and "--overwrite" not in fresh


def test_rerun_with_other_settings_is_refused_before_training(study: dict, capsys) -> None:
    argv = [a if a != "0.003" else "0.01" for a in study["argv"]]  # another --lr
    before = _weights_mtimes(study["dir"])
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "train.lr: 0.003 vs 0.01" in err and "Fix:" in err
    assert _weights_mtimes(study["dir"]) == before


def test_a_damaged_run_is_listed_and_the_others_reported(study: dict, tmp_path, capsys) -> None:
    """Weights truncated by a failed copy: once it blocked the whole report."""
    import shutil

    from napari_calf.study.compare import run_status

    copy = tmp_path / "study"
    shutil.copytree(study["dir"], copy)
    weights = copy / "runs" / "unet__bce__seed1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert cli.main(["compare", "--collect", str(copy), "--no-progress", "--no-plots",
                     "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "unet__bce__seed1: damaged" in out and "model.safetensors" in out
    summary = json.loads((copy / "summary.json").read_text())
    assert {r["loss"]: r["n_seeds"] for r in summary["rows"]} == {"calf": 2, "bce": 1}
    assert run_status(weights.parent) == "restart"  # the study's rerun trains it again
