"""The comparison study's core: plan, run-folder states, scheduler, statistics, summary.

Training itself is exercised end to end in ``tests/test_cli_compare.py``; here
everything runs in milliseconds (fake commands, hand-made evaluations).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as sps

from napari_calf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from napari_calf.errors import CalfConfigError
from napari_calf.study.evaluation import RunEvaluation
from napari_calf.study.collect import sort_records
from napari_calf.study.compare import config_differences, parse_run_name, plan_study, run_name, run_status
from napari_calf.study.jobs import iter_run_commands, train_device_args
from napari_calf.study.report import bootstrap_ci, paired_test, summarise, wilcoxon_p


def _base(tmp_path: Path) -> RunConfig:
    return RunConfig(data=DataConfig(data_dir=str(tmp_path / "data")), out_dir="x",
                     model=ModelConfig(encoder="resnet18", encoder_depth=3),
                     train=TrainConfig(epochs=2, batch_size=4))


def test_plan_changes_only_arch_loss_seed_and_folder(tmp_path: Path) -> None:
    plan = plan_study(tmp_path / "study", _base(tmp_path), losses=["calf", "bce"],
                      archs=["UNet", "fpn"], seeds=[0, 1])
    assert len(plan.runs) == 8
    names = [r.name for r in plan.runs]
    assert names[:4] == ["unet__calf__seed0", "unet__bce__seed0", "fpn__calf__seed0",
                         "fpn__bce__seed0"]
    by = {r.name: r for r in plan.runs}
    a, b = by["unet__calf__seed1"].config.to_dict(), by["unet__bce__seed1"].config.to_dict()
    # the folder differs, and apart from where it is stored only the loss does
    assert a["out_dir"] != b["out_dir"]
    assert config_differences(a, b) == ["train.loss: 'calf' vs 'bce'"]
    assert by["fpn__bce__seed1"].run_dir == (tmp_path / "study" / "runs" / "fpn__bce__seed1").resolve()
    assert Path(plan.data_dir).is_absolute()


@pytest.mark.parametrize("kw, word", [
    ({"losses": ["calf", "nope"]}, "nope"),
    ({"losses": ["calf", "calf"]}, "repeats"),
    ({"archs": ["unet", "segformerz"]}, "segformerz"),
    ({"seeds": []}, "empty"),
])
def test_plan_refuses_bad_names(tmp_path: Path, kw: dict, word: str) -> None:
    args = {"losses": ["calf", "bce"], "archs": ["unet"], "seeds": [0], **kw}
    with pytest.raises(CalfConfigError, match=word):
        plan_study(tmp_path, _base(tmp_path), **args)


def test_run_names_round_trip() -> None:
    assert parse_run_name(run_name("deeplabv3", "bce-dice", 2)) == ("deeplabv3", "bce-dice", 2)
    assert parse_run_name("notes") is None


def _card(folder: Path, status: str, *, state: bool = False, weights: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": status, "config": {}}))
    if state:
        (folder / "state.safetensors").write_bytes(b"x")
    if weights:  # a real (tiny) weights file: a damaged one means "train it again"
        from safetensors.numpy import save_file

        save_file({"w": np.zeros(4, np.float32)}, str(folder / "model.safetensors"))


def test_run_status_decides_skip_resume_restart(tmp_path: Path) -> None:
    assert run_status(tmp_path / "absent") == "missing"
    _card(tmp_path / "done", "finished")
    _card(tmp_path / "early", "early-stopped")
    _card(tmp_path / "stopped", "stopped", state=True)
    _card(tmp_path / "crashed", "running", state=False, weights=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    (tmp_path / "locked").mkdir()  # a start that died before writing anything but its lock
    (tmp_path / "locked" / ".napari-calf.lock").write_text("{}")
    assert run_status(tmp_path / "done") == "finished"
    assert run_status(tmp_path / "early") == "finished"
    assert run_status(tmp_path / "stopped") == "resumable"
    assert run_status(tmp_path / "crashed") == "restart"
    assert run_status(tmp_path / "junk") == "restart"
    assert run_status(tmp_path / "locked") == "missing"


def test_device_arguments_pin_one_gpu_per_process() -> None:
    assert train_device_args("cuda:1") == (["--device", "cuda"], {"CUDA_VISIBLE_DEVICES": "1"})
    assert train_device_args("cpu") == (["--device", "cpu"], {})


def test_scheduler_runs_one_command_per_device_at_a_time(tmp_path: Path) -> None:
    # each fake job writes its device, start and end time; 4 jobs on 2 slots
    script = ("import sys, time, json; t0 = time.time(); time.sleep(0.4); "
              "json.dump({'dev': sys.argv[2], 't0': t0, 't1': time.time()}, "
              "open(sys.argv[1], 'w'))")
    jobs = [(f"job{i}", [sys.executable, "-c", script, str(tmp_path / f"job{i}.json")])
            for i in range(4)]
    events = []
    gen = iter_run_commands(jobs, ["devA", "devB"], log_dir=tmp_path / "logs",
                            device_args=lambda d: ([d], {}), poll_s=0.05)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            codes = stop.value
            break
    assert codes == {f"job{i}": 0 for i in range(4)}
    runs = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(4)]
    for dev in ("devA", "devB"):
        spans = sorted((r["t0"], r["t1"]) for r in runs if r["dev"] == dev)
        assert len(spans) == 2
        assert spans[0][1] <= spans[1][0]  # never two at once on one device
    # both devices were used at the same time (the point of --devices)
    a = [r for r in runs if r["dev"] == "devA"][0]
    b = [r for r in runs if r["dev"] == "devB"][0]
    assert a["t0"] < b["t1"] and b["t0"] < a["t1"]
    assert [e.action for e in events].count("start") == 4
    assert (tmp_path / "logs" / "job0.log").exists()


def test_scheduler_stop_interrupts_running_commands(tmp_path: Path) -> None:
    # like `napari-calf train`: Ctrl-C (KeyboardInterrupt) saves the state, exits 130
    script = ("import sys, time\n"
              "open(sys.argv[1] + '.up', 'w').write('up')\n"
              "try:\n time.sleep(30)\n"
              "except KeyboardInterrupt:\n open(sys.argv[1], 'w').write('saved'); sys.exit(130)\n")
    marker = tmp_path / "state"
    jobs = [("long", [sys.executable, "-c", script, str(marker)]),
            ("never", [sys.executable, "-c", "pass"])]
    started = time.monotonic()
    # a study started in the background (nohup … &) inherits an ignored SIGINT; its
    # trainings must still stop cleanly
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        gen = iter_run_commands(jobs, ["cpu"], log_dir=tmp_path,
                                device_args=lambda d: ([], {}),
                                stop=lambda: Path(str(marker) + ".up").exists(), poll_s=0.05)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                codes = stop.value
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    assert marker.read_text() == "saved"  # it got SIGINT and could save its state
    assert codes == {"long": 130}  # and the queued command never started
    assert time.monotonic() - started < 25


def test_wilcoxon_not_computable_cases() -> None:
    p, why = wilcoxon_p([0.0, 0.0, 0.0, 0.0])
    assert p is None and "zero" in why
    p, why = wilcoxon_p([0.1, 0.2])
    assert p is None and "2 pair" in why
    d = [0.05, 0.1, -0.02, 0.07, 0.12, 0.03, 0.09]
    p, why = wilcoxon_p(d)
    assert why is None and p == pytest.approx(sps.wilcoxon(d).pvalue)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(0.05, 0.02, 40)
    lo, hi = bootstrap_ci(d, n_resamples=2000, seed=1)
    assert (lo, hi) == bootstrap_ci(d, n_resamples=2000, seed=1)
    assert lo < d.mean() < hi
    # the interval's width is about 2 * 1.96 standard errors of the mean
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_paired_verdicts_say_when_it_is_noise() -> None:
    clear = paired_test([0.1, 0.12, 0.09, 0.11, 0.1, 0.13, 0.08, 0.1], reference="calf",
                        other="bce", metric="case Dice")
    assert clear["distinguishable"] and "calf is better than bce" in clear["verdict"]
    noise = paired_test([0.1, -0.1, 0.05, -0.06, 0.02, -0.01], reference="calf", other="bce",
                        metric="case Dice")
    assert not noise["distinguishable"] and "not distinguishable from noise" in noise["verdict"]
    zeros = paired_test([0.0] * 5, reference="calf", other="dice", metric="case Dice")
    assert zeros["p_wilcoxon"] is None and "not distinguishable" in zeros["verdict"]
    # lower HD95 is better: a negative difference is calf's advantage
    hd = paired_test([-5, -6, -4, -5.5, -7, -6, -5], reference="calf", other="bce",
                     metric="HD95", higher_is_better=False)
    assert "calf is better" in hd["verdict"]


def _record(arch: str, loss: str, seed: int, dice: list[float], slice_dice: list[float],
            gt_area: list[float]) -> SimpleNamespace:
    n = len(slice_dice)
    ev = RunEvaluation(
        run_dir="r", data_dir="d", target="wt",
        cases=[{"case_id": f"c{i}", "dice": v, "iou": v / (2 - v), "hd95_mm": 10.0 * (1 - v),
                "empty_slices": 4, "fp_empty_slices": i % 2} for i, v in enumerate(dice)],
        slices={"case_id": np.array(["c0"] * n), "slice": np.arange(n),
                "dice": np.array(slice_dice, float), "gt_area": np.array(gt_area, float),
                "pred_area": np.array(gt_area, float)},
        size_edges=(10.0, 100.0))
    card = {"data": {"selection": {"transform": "ln", "reason": "S = 2 ≥ 1"},
                     "statistics": {"skewness": 2.0, "kurtosis": 5.0, "n": 30}}}
    return SimpleNamespace(name=run_name(arch, loss, seed), arch=arch, loss=loss, seed=seed,
                           evaluation=ev, card=card, selection=card["data"]["selection"],
                           statistics=card["data"]["statistics"])


def test_summary_means_and_sds_over_seeds_match_numpy() -> None:
    areas = [5, 50, 500, 0]
    recs = [_record("unet", "calf", 0, [0.8, 0.6], [0.2, 0.5, 0.9, 1.0], areas),
            _record("unet", "calf", 1, [0.7, 0.5], [0.4, 0.6, 0.8, 1.0], areas),
            _record("unet", "bce", 0, [0.6, 0.4], [0.1, 0.5, 0.9, 1.0], areas)]
    s = summarise(recs)
    row = {r["loss"]: r for r in s["rows"]}
    per_seed = [np.mean([0.8, 0.6]), np.mean([0.7, 0.5])]
    assert row["calf"]["dice_mean"] == pytest.approx(np.mean(per_seed))
    assert row["calf"]["dice_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["calf"]["dice_small_mean"] == pytest.approx(0.3)  # slices with area 5
    assert row["calf"]["dice_large_mean"] == pytest.approx(0.85)
    assert row["calf"]["fp_rate_empty_mean"] == pytest.approx(1 / 8)  # 1 of 2×4 empty slices
    assert row["bce"]["dice_sd"] is None  # one seed: no spread to report
    assert "seed 0: ln (S=2.00, K=5.00)" in row["calf"]["calf_selection"]


def test_records_follow_the_study_order() -> None:
    recs = [_record("unet", loss, seed, [0.5], [0.5], [5])
            for loss in ("bce", "calf", "dice") for seed in (1, 0)]
    order = sort_records(recs, {"losses": ["calf", "dice", "bce"], "archs": ["unet"]})
    assert [(r.loss, r.seed) for r in order] == [("calf", 0), ("calf", 1), ("dice", 0),
                                                  ("dice", 1), ("bce", 0), ("bce", 1)]
