"""Checkpoints: safetensors + JSON only, never unpickled, written atomically."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from napari_calf.engine import checkpoints as ck
from napari_calf.engine import resume_file as rf
from napari_calf.errors import CalfCheckpointError, CalfFileExistsError


class _Exploit:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _tiny_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))


def test_weights_round_trip_exactly(tmp_path: Path) -> None:
    import torch

    model = _tiny_model()
    model(torch.randn(4, 2, 8, 8))  # move the BatchNorm running stats
    ck.save_weights(model, tmp_path / "model.safetensors")
    loaded = ck.load_weights(tmp_path)  # a run folder resolves to model.safetensors
    assert set(loaded) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("name", ["model.safetensors", "weights.pt"])
def test_pickle_checkpoint_is_refused_without_running_it(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": _Exploit(marker)}, protocol=4)
    # sanity: the payload really does run code when unpickled
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_bytes(payload)
    card = {"config": {}, "model": {"arch": "Unet", "encoder": "resnet18", "in_channels": 4}}
    (run / "run.json").write_text(json.dumps(card))
    with pytest.raises(CalfCheckpointError) as err:
        ck.load_weights(run / name)
    assert "pickle" in str(err.value) and "never unpickles" in str(err.value)
    assert not marker.exists(), "loading must not run the pickle's code"

    from napari_calf.engine.run_card import load_run_model

    if name == "model.safetensors":
        with pytest.raises(CalfCheckpointError, match="refused"):
            load_run_model(run)
        assert not marker.exists()


def test_torch_save_archive_is_refused(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "model.safetensors"
    torch.save(_tiny_model().state_dict(), path)  # a zip archive with a pickle inside
    with pytest.raises(CalfCheckpointError, match="pickle"):
        ck.load_weights(path)


def test_garbage_and_truncated_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"hello world, not a checkpoint at all")
    with pytest.raises(CalfCheckpointError, match="not a safetensors file"):
        ck.load_weights(tmp_path / "a.safetensors")
    good = tmp_path / "b.safetensors"
    ck.save_weights(_tiny_model(), good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(CalfCheckpointError, match="damaged"):
        ck.load_weights(good)
    with pytest.raises(CalfCheckpointError, match="no such checkpoint"):
        ck.load_weights(tmp_path / "missing.safetensors")


def test_optimizer_state_round_trips_and_continues_identically(tmp_path: Path) -> None:
    import torch

    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 3)
        opt = torch.optim.AdamW(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
        return model, opt, sched

    def step(model, opt, sched):
        torch.manual_seed(1)
        loss = model(torch.randn(7, 5)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    a = make()
    for _ in range(3):
        step(*a)
    ck.save_weights(a[0], tmp_path / "last.safetensors")
    rf.save_training_state(tmp_path, {"optimizer": a[1].state_dict(), "scheduler": a[2].state_dict(),
                                      "py": (1, (2, 3), None), "ints": {0: "x", 5: "y"}})
    b = make()
    b[0].load_state_dict(ck.load_weights(tmp_path / "last.safetensors"))
    state = rf.load_training_state(tmp_path)
    assert state["py"] == (1, (2, 3), None) and state["ints"] == {0: "x", 5: "y"}
    b[1].load_state_dict(state["optimizer"])
    b[2].load_state_dict(state["scheduler"])
    step(*a)
    step(*b)
    for pa, pb in zip(a[0].parameters(), b[0].parameters()):
        assert torch.equal(pa, pb)
    assert a[2].get_last_lr() == b[2].get_last_lr()
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


def test_an_interrupted_state_save_leaves_the_previous_resume_point_whole(tmp_path: Path,
                                                                        monkeypatch) -> None:
    import os

    import torch

    rf.save_training_state(tmp_path, {"x": torch.ones(2), "epoch": 1})

    def killed(*args, **kwargs):  # e.g. a second Ctrl-C just before the new file is moved in
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        rf.save_training_state(tmp_path, {"x": torch.zeros(2), "epoch": 2})
    monkeypatch.undo()
    state = rf.load_training_state(tmp_path)
    assert state["epoch"] == 1 and torch.equal(state["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == [ck.STATE_TENSORS]


def test_a_resume_point_in_the_old_two_file_layout_is_refused_with_the_way_on(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"x": torch.ones(2)}, str(tmp_path / ck.STATE_TENSORS), metadata={"token": "ab"})
    (tmp_path / ck.STATE_JSON).write_text('{"token": "ab", "state": {}}')
    with pytest.raises(CalfCheckpointError, match="older napari-calf.*--init"):
        rf.load_training_state(tmp_path)


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    ck.write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with ck.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk died")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert target.stat().st_mode & 0o044, "the run card should be readable like any file"


def test_run_dir_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CalfFileExistsError):
        ck.prepare_run_dir(out, overwrite=False, need_bytes=0)
    assert (out / "model.safetensors").read_bytes() == b"old"
    ck.prepare_run_dir(out, overwrite=True, need_bytes=0)
    assert not (out / "model.safetensors").exists()
    assert (out / "notes.txt").read_text() == "mine", "only the run's own files are removed"


def test_unwritable_or_full_output_fails_up_front(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(CalfCheckpointError, match="cannot write there|is a file"):
        ck.prepare_run_dir(blocker / "run", overwrite=False, need_bytes=0)

    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(CalfCheckpointError, match="MiB free"):
        ck.prepare_run_dir(tmp_path / "run2", overwrite=False, need_bytes=50 * 2**20)


def test_history_csv_has_one_row_per_epoch(tmp_path: Path) -> None:
    import csv

    rows = [{"epoch": 1, "dice": 0.5, "dice_small": None}, {"epoch": 2, "dice": 0.25, "dice_small": 0.1}]
    ck.write_csv_atomic(tmp_path / "history.csv", rows)
    with open(tmp_path / "history.csv") as fh:
        back = list(csv.DictReader(fh))
    assert [r["epoch"] for r in back] == ["1", "2"]
    assert np.isclose(float(back[1]["dice"]), 0.25) and back[0]["dice_small"] == ""


def test_a_safetensors_file_whose_header_length_starts_like_a_pickle_loads(tmp_path: Path) -> None:
    """A header length whose low byte is 0x80 (one file in 256) is not a pickle."""
    import torch
    from safetensors.torch import save

    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    for pad in range(300):
        data = save(tensors, metadata={"pad": "x" * pad})
        if data[0] == 0x80:
            break
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    assert torch.equal(ck.load_weights(path)["w"], tensors["w"])


def test_a_full_disk_while_writing_weights_is_named_and_keeps_the_old_file(tmp_path: Path,
                                                                          monkeypatch) -> None:
    """safetensors reports a failed write as text ending in "(os error 28)" (the form it
    gives e.g. for EFBIG under a file-size limit); that must read as a full disk."""
    import safetensors.torch
    import torch
    from safetensors import SafetensorError

    target = tmp_path / "last.safetensors"
    ck.save_weights({"w": torch.ones(3)}, target)

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(CalfCheckpointError, match=r"last\.safetensors: no space left on device"):
        ck.save_weights({"w": torch.zeros(3)}, target)
    monkeypatch.undo()
    assert torch.equal(ck.load_weights(target)["w"], torch.ones(3))
