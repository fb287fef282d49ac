"""Reliability of train/predict/evaluate from the command line: nothing wrong passes silently.

Channels by name (predict --channel-order), a run folder held by another process, resume
with its own settings (options it cannot honour are refused, the rest applied and said),
and resume from moved data. Tiny models on the CPU.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_calf._cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from _engine_data import write_tiny_dataset  # tests/_engine_data.py

    return write_tiny_dataset(tmp_path_factory.mktemp("cli-safety") / "data", 3, seed=3)


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory) -> Path:
    """A run folder with an untrained 4-channel network, as `napari-calf train` leaves it."""
    from _engine_data import write_untrained_run  # tests/_engine_data.py

    return write_untrained_run(tmp_path_factory.mktemp("untrained"))


def test_predict_refuses_files_it_cannot_match_by_name_unless_told_the_order(
        untrained_run, data, tmp_path, capsys) -> None:
    case = data / "Tiny-000"
    odd = tmp_path / "Tiny-000_post.nii.gz"  # t1ce under a name no alias covers
    shutil.copy(case / "Tiny-000_t1ce.nii.gz", odd)
    files = [str(case / "Tiny-000_t1.nii.gz"), str(odd), str(case / "Tiny-000_t2.nii.gz"),
             str(case / "Tiny-000_flair.nii.gz")]
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", str(untrained_run), *files, "--out", str(out), "--device", "cpu",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Tiny-000_post.nii.gz" in err and "--channel-order positional" in err
    assert not out.exists()
    assert main(["predict", str(untrained_run), *files, "--out", str(out), "--device", "cpu",
                 "--no-progress", "--channel-order", "positional"]) == 0
    # the same as the case folder, whose files carry the run's names
    ref = tmp_path / "ref.nii.gz"
    assert main(["predict", str(untrained_run), str(case), "--out", str(ref), "--device", "cpu",
                 "--no-progress"]) == 0
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj),
                                  np.asanyarray(nib.load(ref).dataobj))


# --------------------------------------------------------------------------- resume


def _stopped_run(data: Path, root: Path) -> tuple[Path, Path]:
    """A private copy of the data and a run on it stopped before its first step."""
    from napari_calf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from napari_calf.engine.training import iter_train
    from napari_calf.events import drain

    mine = shutil.copytree(data, root / "data")
    run = root / "run"
    config = RunConfig(
        data=DataConfig(str(mine), val_fraction=0.34, max_slices_per_case=4, store="memory"),
        model=ModelConfig("unet", "tu-resnet10t", encoder_depth=3),
        train=TrainConfig(epochs=2, batch_size=4, lr=3e-3, device="cpu", seed=7),
        out_dir=str(run),
    )
    drain(iter_train(config, stop=lambda: True))
    return Path(mine), run


def test_resume_refuses_options_that_would_change_the_run_naming_both_values(
        data, tmp_path, capsys) -> None:
    _, run = _stopped_run(data, tmp_path)
    before = (run / "state.safetensors").read_bytes()
    code = main(["train", "--resume", str(run), "--lr", "0.5", "--arch", "fpn", "--seed", "7",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--lr 0.5 (the run: 0.003)" in err and "--arch fpn (the run: unet)" in err
    assert "--seed" not in err  # given, but the run's own value: nothing to refuse
    assert (run / "state.safetensors").read_bytes() == before  # nothing was trained


def test_resume_applies_what_may_change_and_takes_moved_data_saying_so(data, tmp_path,
                                                                        capsys) -> None:
    mine, run = _stopped_run(data, tmp_path)
    moved = mine.rename(tmp_path / "moved")
    report = tmp_path / "resumed.json"
    code = main(["train", "--resume", str(run), str(moved), "--epochs", "1", "--device", "cpu",
                 "--batch-size", "4", "--no-progress", "--json", str(report)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--epochs 1 (the run had 2)" in err and f"DATA {moved}" in err
    assert json.loads(report.read_text())["epochs_done"] == 1
    card = json.loads((run / "run.json").read_text())
    assert card["config"]["train"]["epochs"] == 1 and card["config"]["data"]["data_dir"] == str(moved)
    assert card["status"] == "finished" and len(card["history"]) == 1


# --------------------------------------------------------------------------- one writer


def _hold(folder: Path, call: str = "lock_folder(sys.argv[1], doing='is busy', fix='wait')"):
    from _engine_data import hold_in_another_process  # tests/_engine_data.py

    return hold_in_another_process(folder, call)


def test_a_run_folder_held_by_another_process_is_refused_naming_it(data, tmp_path, capsys) -> None:
    folder = tmp_path / "busy"
    holder = _hold(folder, "lock_run_folder(sys.argv[1])")
    try:
        code = main(["train", str(data), "--out", str(folder), "--overwrite", "--epochs", "1",
                     "--device", "cpu", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 1 and f"pid {holder.pid}" in err and "another napari-calf process" in err
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without any clean-up, as in a crash
        holder.wait()
    from napari_calf.engine.run_lock import lock_run_folder

    with lock_run_folder(folder) as lock:  # the OS dropped the dead holder's lock
        assert lock.held





@pytest.mark.parametrize("tool", ["compare", "compare --collect", "audit"])
def test_a_study_or_audit_folder_in_use_is_refused_before_anything_is_written(
    data, tmp_path, capsys, tool
) -> None:
    folder = tmp_path / "study"
    holder = _hold(folder)
    try:
        if tool == "compare":
            argv = ["compare", str(data), "--out", str(folder), "--losses", "calf,bce", "--seeds", "1",
                    "--epochs", "1", "--device", "cpu", "--no-progress"]
        elif tool == "audit":
            argv = ["audit", str(data), "--out", str(folder), "--folds", "2", "--epochs", "1",
                    "--device", "cpu", "--no-progress"]
        else:
            argv = ["compare", "--collect", str(folder), "--no-progress"]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"pid {holder.pid}" in err and f"is running `napari-calf {tool.split()[0]}`" in err
        assert sorted(p.name for p in folder.iterdir()) == [".napari-calf.lock"]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_study_folder_left_with_only_a_lock_file_is_still_a_fresh_study(tmp_path) -> None:
    """A compare killed between taking its lock and writing study.json leaves the lock file:
    the folder is not 'someone else's files'."""
    from napari_calf.study.report_files import check_study_folder

    folder = tmp_path / "study"
    holder = _hold(folder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    check_study_folder(folder)  # no refusal
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="is not empty \\(notes.txt\\)"):
        check_study_folder(folder)
