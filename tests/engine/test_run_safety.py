"""Run folders under faults: a second process, a crash between writes, a full disk, moved
data, tampered files, unusable weights. Each either goes right or is refused by name.

Tiny runs (a 0.3 M-parameter U-Net, two steps per epoch) on the CPU. A "crash" is an
exception no handler of the product catches (a ``BaseException``), raised right after a
chosen file was moved into place, so what is on disk is what a kill at that moment leaves.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

import napari_calf.io.files as files_module
from napari_calf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from napari_calf.engine.checkpoints import load_weights
from napari_calf.engine.resume_file import load_training_state, save_training_state
from napari_calf.engine.training import iter_train, resume_config
from napari_calf.engine.training_events import EpochEnd, TrainStarted, TrainStep
from napari_calf.errors import CalfCheckpointError, CalfInputError
from napari_calf.events import Progress, drain

pytestmark = pytest.mark.slow


def tiny(data: Path, out: Path, **train: Any) -> RunConfig:
    settings = dict(epochs=2, batch_size=4, lr=3e-3, device="cpu", augment=True, patience=None,
                    seed=7)
    settings.update(train)
    return RunConfig(
        data=DataConfig(str(data), val_fraction=0.34, max_slices_per_case=4, empty_fraction=0.05,
                        val_empty_fraction=0.05, store="memory"),
        model=ModelConfig("unet", "tu-resnet10t", encoder_depth=3),
        train=TrainConfig(**settings),
        out_dir=str(out),
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from _engine_data import write_tiny_dataset  # tests/_engine_data.py

    return write_tiny_dataset(tmp_path_factory.mktemp("safety") / "data", 3, seed=5)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> Path:
    """Two epochs without a break: what every interrupted run must end up as."""
    out = tmp_path_factory.mktemp("straight") / "run"
    drain(iter_train(tiny(data, out)))
    return out


@pytest.fixture(scope="module")
def after_epoch_1(data, tmp_path_factory) -> Path:
    """A run stopped between epoch 1 and 2: its resume point is the end of epoch 1."""
    out = tmp_path_factory.mktemp("epoch1") / "run"
    ended = []
    gen = iter_train(tiny(data, out), stop=lambda: bool(ended))
    for ev in gen:
        if isinstance(ev, EpochEnd):
            ended.append(ev)
    return out


@pytest.fixture(scope="module")
def stopped(data, tmp_path_factory) -> Path:
    """A run stopped before its first step (cheap: a card and a resume point)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    drain(iter_train(tiny(data, out), stop=lambda: True))
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def assert_same_run(run: Path, reference: Path) -> None:
    import torch

    for name in ("last.safetensors", "model.safetensors"):
        a, b = load_weights(run / name), load_weights(reference / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"
    card, ref = (json.loads((p / "run.json").read_text()) for p in (run, reference))
    assert card["status"] == "finished"
    assert [(h["epoch"], h["train_loss"], h["dice"]) for h in card["history"]] == \
        [(h["epoch"], h["train_loss"], h["dice"]) for h in ref["history"]]
    assert card["best"] == ref["best"]
    assert _history_csv(run) == _history_csv(reference)


def _history_csv(run: Path) -> list[dict]:
    import csv

    with (run / "history.csv").open() as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


# --------------------------------------------------------------------------- disk faults


class SimulatedCrash(BaseException):
    """The process dies here: nothing of the product's error handling runs."""


class DiskFault:
    """Stands in for ``os`` in :mod:`napari_calf.io.files`: once armed, the k-th file moved
    into ``run`` either is the last thing that happens (``crash_after``) or fails because
    the disk is full (``enospc``: safetensors files only, small files still fit)."""

    def __init__(self, run: Path, *, crash_after: int | None = None, enospc: bool = False) -> None:
        self.run = run.resolve()
        self.crash_after = crash_after
        self.enospc = enospc
        self.armed = False
        self.moved: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        dst = Path(dst)
        ours = self.armed and dst.parent.resolve() == self.run
        if ours and self.enospc and dst.suffix == ".safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        os.replace(src, dst)
        if ours and self.crash_after is not None:
            self.moved.append(dst.name)
            if len(self.moved) == self.crash_after:
                raise SimulatedCrash(dst.name)


def run_epoch_2(config: RunConfig, fault: DiskFault | None) -> bool:
    """Drive a run, arming ``fault`` once epoch 2's last batch is done; True if it crashed."""
    try:
        for ev in iter_train(config):
            if fault is not None and isinstance(ev, TrainStep) and ev.epoch == 2 \
                    and ev.batch == ev.batches:
                fault.armed = True
    except SimulatedCrash:
        return True
    return False


def test_a_kill_between_any_two_checkpoint_writes_resumes_bit_identically(
        straight, after_epoch_1, tmp_path, monkeypatch) -> None:
    interrupted = []
    for k in range(1, 10):
        run = copy_run(after_epoch_1, tmp_path / f"crash{k}")
        fault = DiskFault(run, crash_after=k)
        monkeypatch.setattr(files_module, "os", fault)
        crashed = run_epoch_2(resume_config(run), fault)
        monkeypatch.setattr(files_module, "os", os)
        if not crashed:
            break  # k is past the last file written at the end of epoch 2
        interrupted.append(fault.moved[-1])
        # the resume point the kill left is consistent: resuming gives the straight run
        assert not run_epoch_2(resume_config(run), None)
        assert_same_run(run, straight)
    # weights, resume state, history and card were each the last file before a kill
    assert {"last.safetensors", "history.csv", "run.json"} <= set(interrupted)
    assert any(name.startswith("state") for name in interrupted)


def test_a_full_disk_is_named_marks_the_run_failed_and_keeps_the_resume_point(
        straight, after_epoch_1, tmp_path, monkeypatch) -> None:
    run = copy_run(after_epoch_1, tmp_path / "full")
    fault = DiskFault(run, enospc=True)
    monkeypatch.setattr(files_module, "os", fault)
    with pytest.raises(CalfCheckpointError) as err:
        run_epoch_2(resume_config(run), fault)
    monkeypatch.setattr(files_module, "os", os)
    msg = str(err.value)
    assert "no space left on device" in msg and ".safetensors" in msg
    assert " MB" in msg and "--out" in msg and "--resume" in msg
    card = json.loads((run / "run.json").read_text())
    assert card["status"] == "failed" and "no space left on device" in card["error"]
    # after freeing space, the resume continues from the last good point
    assert not run_epoch_2(resume_config(run), None)
    assert_same_run(run, straight)


# --------------------------------------------------------------------------- one writer


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_holder(data, tmp_path) -> None:
    out = tmp_path / "run"
    first = iter_train(tiny(data, out))
    for ev in first:
        if isinstance(ev, TrainStep):
            break
    try:
        with pytest.raises(CalfCheckpointError) as err:
            next(iter_train(tiny(data, out).replace(overwrite=True)))
        msg = str(err.value)
        assert f"pid {os.getpid()}" in msg and socket.gethostname() in msg
    finally:
        first.close()  # stops the first run at a consistent point and lets go of the folder
    assert json.loads((out / "run.json").read_text())["status"] == "stopped"
    again = iter_train(resume_config(out))
    assert isinstance(next(again), Progress)  # the folder is free again
    again.close()


def test_a_folder_on_a_filesystem_without_locks_is_used_and_said(tmp_path, monkeypatch) -> None:
    from napari_calf.engine import run_lock

    def no_locks(fd: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(run_lock, "_lock", no_locks)
    with run_lock.lock_run_folder(tmp_path / "nfs") as lock:
        assert not lock.held and "does not support file locks" in lock.note


# --------------------------------------------------------------------------- moved data


def test_resume_does_not_depend_on_the_working_directory_and_follows_moved_data(
        data, tmp_path, monkeypatch) -> None:
    shutil.copytree(data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    drain(iter_train(tiny(Path("data"), run), stop=lambda: True))  # a relative DATA, as typed
    stored = json.loads((run / "run.json").read_text())["config"]["data"]["data_dir"]
    assert Path(stored) == tmp_path / "data"

    monkeypatch.chdir(run)  # anywhere else
    started = next(ev for ev in iter_train(resume_config(run)) if isinstance(ev, TrainStarted))
    assert started.resumed or started.start_epoch == 1

    (tmp_path / "data").rename(tmp_path / "moved")
    with pytest.raises(CalfInputError, match="DATA"):
        resume_config(run)  # says how to point the resume at the data
    config = resume_config(run, data_dir=tmp_path / "moved")
    assert config.data.data_dir == str(tmp_path / "moved")
    gen = iter_train(config)
    assert any(isinstance(ev, TrainStarted) for ev in gen)

    partial = shutil.copytree(tmp_path / "moved", tmp_path / "partial")
    shutil.rmtree(Path(partial) / "Tiny-001")
    with pytest.raises(CalfInputError, match="Tiny-001"):
        resume_config(run, data_dir=partial)


# --------------------------------------------------------------------------- caches


def test_resume_keeps_slice_caches_under_the_cache_root(stopped, tmp_path) -> None:
    from napari_calf.engine.training import plan_resume

    run = copy_run(stopped, tmp_path / "run")
    card = json.loads((run / "run.json").read_text())
    card["config"]["data"]["cache_dir"] = str(tmp_path / "anywhere")
    (run / "run.json").write_text(json.dumps(card))
    assert resume_config(run).data.cache_dir is None  # the default root, not the card's folder
    notes = " ".join(plan_resume(run).notes)
    assert str(tmp_path / "anywhere") in notes and "--cache-dir" in notes
    # given on the resume itself, it is the user's choice
    assert resume_config(run, cache_dir=tmp_path / "anywhere").data.cache_dir == str(tmp_path / "anywhere")


# --------------------------------------------------------------------------- tampering


def _card(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def _set(d: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d[p]
    d[last] = value


@pytest.mark.parametrize("field, value", [
    ("model.in_channels", 1e9),
    ("model.in_channels", "four"),
    ("preprocessing.pad_multiple", 0),
    ("preprocessing.clip", float("nan")),
    ("preprocessing.modalities", ["t1", 5, "t2", "flair"]),
])
def test_a_tampered_run_card_is_refused_naming_file_and_field(stopped, data, tmp_path,
                                                             field, value) -> None:
    from napari_calf.engine.inference import predict_volume

    run = copy_run(stopped, tmp_path / "run")
    card = _card(run)
    _set(card, field, value)
    (run / "run.json").write_text(json.dumps(card))
    with pytest.raises(CalfCheckpointError) as err:
        predict_volume(run / "last.safetensors", data / "Tiny-000", device="cpu")
    assert "run.json" in str(err.value) and field in str(err.value)


def test_a_deeply_nested_or_invalid_run_config_is_refused_naming_the_file(stopped, tmp_path) -> None:
    run = copy_run(stopped, tmp_path / "run")
    card = _card(run)
    card["config"]["data"]["pad_multiple"] = 0
    (run / "run.json").write_text(json.dumps(card))
    with pytest.raises(CalfCheckpointError, match=r"run\.json.*pad_multiple"):
        resume_config(run)
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CalfCheckpointError, match=r"run\.json"):
        resume_config(run)


@pytest.mark.parametrize("field, value", [
    ("rng.python", (3, (1, 2, 3), None)),
    ("epoch", "four"),
    ("step", -5),
    ("best_dice", float("nan")),
])
def test_a_tampered_resume_state_is_refused_naming_file_and_field(stopped, tmp_path,
                                                                 field, value) -> None:
    run = copy_run(stopped, tmp_path / "run")
    state = load_training_state(run)
    _set(state, field, value)
    save_training_state(run, state)
    with pytest.raises(CalfCheckpointError) as err:
        for _ in iter_train(resume_config(run)):
            pass
    assert "state" in str(err.value) and field in str(err.value)


# --------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def model_run(tmp_path_factory) -> Path:
    """A run folder holding an untrained network (prediction only)."""
    from _engine_data import write_untrained_run  # tests/_engine_data.py

    return write_untrained_run(tmp_path_factory.mktemp("model-run"), "tu-resnet10t")


@pytest.mark.parametrize("damage", ["nan", "int8"])
def test_unusable_weights_are_refused_naming_the_tensor(model_run, data, tmp_path, damage) -> None:
    import torch

    from napari_calf.engine.checkpoints import save_weights
    from napari_calf.engine.inference import predict_volume

    run = copy_run(model_run, tmp_path / "run")
    weights = load_weights(run / "model.safetensors")
    name = next(k for k, v in weights.items() if v.is_floating_point() and v.dim() == 4)
    if damage == "nan":
        weights[name] = weights[name].clone()
        weights[name].view(-1)[3] = float("nan")
    else:
        weights[name] = (weights[name] * 100).to(torch.int8)
    save_weights(weights, run / "model.safetensors")
    with pytest.raises(CalfCheckpointError) as err:
        predict_volume(run, data / "Tiny-000", device="cpu")
    msg = str(err.value)
    assert name in msg and ("NaN" in msg if damage == "nan" else "int8" in msg)
