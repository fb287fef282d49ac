"""Training on a tiny phantom: events, run folder, resume, faults. CPU, a few seconds each."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from napari_calf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from napari_calf.errors import CalfCheckpointError, CalfConfigError, CalfFileExistsError
from napari_calf.errors import CalfTrainingError
from napari_calf.events import Progress
from napari_calf.engine.schedule import lr_factor
from napari_calf.engine.training import iter_train, resume_config
from napari_calf.engine.training_events import EpochEnd, TrainStarted, TrainStep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from _engine_data import write_tiny_dataset  # tests/_engine_data.py

    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data", 3, seed=5)


def tiny_config(data: Path, out: Path, **train) -> RunConfig:
    settings = dict(epochs=2, batch_size=4, lr=3e-3, device="cpu", augment=True, patience=None,
                    seed=7)
    settings.update(train)
    return RunConfig(
        data=DataConfig(str(data), val_fraction=0.34, max_slices_per_case=6, empty_fraction=0.05,
                        val_empty_fraction=0.05, store="memory", cache_dir=str(out.parent / "cache")),
        model=ModelConfig("unet", "resnet18", encoder_depth=3),
        train=TrainConfig(**settings),
        out_dir=str(out),
    )


def run_collect(config: RunConfig, stop=None):
    events = []
    gen = iter_train(config, stop=stop)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return done.value, events


def weights(run: Path, name: str = "last.safetensors") -> dict:
    from napari_calf.engine.checkpoints import load_weights

    return load_weights(run / name)


@pytest.fixture(scope="module")
def trained(phantom: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    config = tiny_config(phantom, out, epochs=3)
    result, events = run_collect(config)
    return config, result, events


def test_training_reduces_loss_and_reports_every_batch_and_epoch(trained) -> None:
    config, result, events = trained
    started = [e for e in events if isinstance(e, TrainStarted)]
    steps = [e for e in events if isinstance(e, TrainStep)]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert len(started) == 1
    s = started[0]
    assert s.device == "cpu" and "CPU" in s.device_reason
    assert not set(s.train_cases) & set(s.val_cases) and len(s.val_cases) == 1
    assert s.selection["transform"] == s.loss["transform"]
    assert s.steps_per_epoch == 3  # 2 training cases x 6 slices / batch 4
    assert len(steps) == s.total_steps == 3 * s.steps_per_epoch
    assert [e.step for e in steps] == list(range(1, s.total_steps + 1))
    assert all(math.isfinite(e.loss) and e.lr > 0 and e.images_per_s > 0 for e in steps)
    assert steps[-1].eta_s == pytest.approx(0.0, abs=1e-6)
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert set(epochs[0].dice_by_size) == {"small", "medium", "large"}
    assert all(0 <= e.dice <= 1 for e in epochs)
    # the loss goes down on this easy task
    assert epochs[-1].train_loss < 0.8 * epochs[0].train_loss
    assert result.best_dice == max(e.dice for e in epochs)
    assert result.epochs_done == 3 and not result.stopped_by_user
    # progress during data preparation came first
    assert isinstance(events[0], Progress)


def test_run_folder_holds_weights_card_history_and_state(trained) -> None:
    config, result, _ = trained
    run = Path(config.out_dir)
    for name in ("model.safetensors", "last.safetensors", "run.json", "history.csv",
                 "state.safetensors"):
        assert (run / name).is_file(), name
    assert not (run / "state.json").exists()  # the resume point is one file
    card = json.loads((run / "run.json").read_text())
    assert card["status"] == "finished"
    assert RunConfig.from_dict(card["config"]) == config
    split = card["data"]["split"]
    assert len(split["train"]) == 2 and len(split["val"]) == 1
    stats = card["data"]["statistics"]
    assert {"n", "n_empty", "skewness", "kurtosis"} <= set(stats)
    assert card["data"]["selection"]["reason"]
    assert card["data"]["filtering"]["kept"] > 0
    assert card["versions"]["torch"] and card["device"]["name"] == "cpu"
    assert [h["epoch"] for h in card["history"]] == [1, 2, 3]
    assert card["best"]["epoch"] == result.best_epoch
    lines = (run / "history.csv").read_text().strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("epoch,")


def test_stop_then_resume_gives_the_same_weights_as_a_straight_run(trained, tmp_path) -> None:
    import torch

    straight_config, straight, straight_events = trained  # 3 epochs without a break
    seen = []

    def stop() -> bool:  # stop in the middle of epoch 2
        return len(seen) >= 4

    config = straight_config.replace(out_dir=str(tmp_path / "stopped"))
    gen = iter_train(config, stop=stop)
    while True:
        try:
            ev = next(gen)
        except StopIteration as done:
            first = done.value
            break
        if isinstance(ev, TrainStep):
            seen.append(ev)
    assert first.stopped_by_user and first.steps_done == 4
    card = json.loads((tmp_path / "stopped" / "run.json").read_text())
    assert card["status"] == "stopped"
    # same seed, same losses (augmentation included) for the steps both runs took
    a = [e.loss for e in straight_events if isinstance(e, TrainStep)][:4]
    assert a == [e.loss for e in seen]

    resumed, events = run_collect(resume_config(tmp_path / "stopped"))
    assert next(e for e in events if isinstance(e, TrainStarted)).resumed
    assert [e.step for e in events if isinstance(e, TrainStep)] == [5, 6, 7, 8, 9]
    assert resumed.steps_done == straight.steps_done
    wa = weights(Path(straight_config.out_dir))
    wb = weights(tmp_path / "stopped")
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert [h["dice"] for h in resumed.history] == [h["dice"] for h in straight.history]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]


def test_non_finite_loss_stops_naming_epoch_and_step_and_keeps_last_good(phantom, tmp_path,
                                                                         monkeypatch) -> None:
    import torch

    import napari_calf.calf.losses as losses

    real_get_loss = losses.get_loss
    calls = {"n": 0}

    def nan_on_fourth_training_step(*args, **kwargs):
        loss = real_get_loss(*args, **kwargs)

        def forward(logits, target):
            value = loss(logits, target)
            if torch.is_grad_enabled():  # training steps only, not validation
                calls["n"] += 1
                if calls["n"] == 4:
                    return value * float("nan")
            return value

        forward.describe = loss.describe
        return forward

    monkeypatch.setattr(losses, "get_loss", nan_on_fourth_training_step)
    out = tmp_path / "run"
    with pytest.raises(CalfTrainingError, match=r"epoch 2, step 4 \(batch 1 of 3\)"):
        run_collect(tiny_config(phantom, out))
    last = weights(out)
    assert all(torch.isfinite(t).all() for t in last.values() if t.is_floating_point())
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "failed" and "epoch 2, step 4" in card["error"]
    assert card["best"]["epoch"] == 1 and (out / "model.safetensors").is_file()


def test_existing_run_folder_is_refused_and_disk_checked_before_data(phantom, tmp_path,
                                                                    monkeypatch) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "something.txt").write_text("keep me")
    with pytest.raises(CalfFileExistsError):
        next(iter_train(tiny_config(phantom, out)))
    assert sorted(p.name for p in out.iterdir()) == ["something.txt"]

    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10, 10))
    gen = iter_train(tiny_config(phantom, tmp_path / "full"))
    with pytest.raises(CalfCheckpointError, match="MiB free"):
        next(gen)  # the very first event: no data was prepared before the check


def test_init_from_a_different_network_is_refused(trained, phantom, tmp_path) -> None:
    config, _, _ = trained
    other = tiny_config(phantom, tmp_path / "ft")
    other = other.replace(model=ModelConfig("unet", "resnet34", encoder_depth=3, init=config.out_dir))
    with pytest.raises(CalfCheckpointError, match="encoder: checkpoint 'resnet18' vs this run 'resnet34'"):
        next(iter_train(other))


def test_resume_refuses_a_folder_without_state(tmp_path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(CalfCheckpointError, match="no resume point"):
        resume_config(tmp_path)


def test_schedule_warms_up_linearly_then_decays_to_zero() -> None:
    total, warm = 100, 10
    f = [lr_factor(s, total, warm) for s in range(total)]
    np.testing.assert_allclose(f[:10], np.arange(1, 11) / 10)
    assert f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert lr_factor(total, total, warm) == pytest.approx(0.0)


def test_auto_device_says_which_and_why() -> None:
    import torch

    from napari_calf.engine.devices import select_device

    dev, why = select_device("auto")
    assert why.startswith("auto:")
    if not torch.cuda.is_available():
        assert "no CUDA" in why
        with pytest.raises(CalfConfigError, match="no CUDA GPU"):
            select_device("cuda")


def test_the_guis_warm_up_imports_every_module_a_run_needs() -> None:
    """The training panel calls import_engine() in the background and only logs a failure
    at debug level; a module name it gets wrong (one that moved) would stop it halfway."""
    import sys

    from napari_calf.engine.training import import_engine

    import_engine()  # raised ModuleNotFoundError (napari_calf.engine.losses) before
    assert {"napari_calf.calf.losses", "napari_calf.engine.inference",
            "napari_calf.engine.run_lock", "segmentation_models_pytorch"} <= set(sys.modules)
