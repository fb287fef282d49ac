"""Reliability of train/predict/evaluate from the command line: nothing wrong passes silently.

Channels by name (predict --channel-order), a run folder held by another process, resume
with its own settings (options it cannot honour are refused, the rest applied and said),
and resume from moved data. Tiny models on the CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
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
    import torch

    from napari_calf.config import DataConfig, ModelConfig, RunConfig
    from napari_calf.engine.checkpoints import save_weights
    from napari_calf.engine.models import build_model
    from napari_calf.engine.run_card import model_info, new_card, preprocessing_info, write_run_card

    run = tmp_path_factory.mktemp("untrained")
    config = RunConfig(data=DataConfig("unused"), out_dir=str(run),
                       model=ModelConfig("unet", "resnet18", encoder_depth=3))
    torch.manual_seed(0)
    save_weights(build_model("unet", "resnet18", 4, encoder_depth=3), run / "model.safetensors")
    card = new_card(config)
    card.update(model=model_info(config, 4, 0),
                preprocessing=preprocessing_info(config, ("t1", "t1ce", "t2", "flair")))
    write_run_card(run, card)
    return run


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
