"""predict_volume: results come back in the input's own orientation, affine and shape."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import stats as sps

from napari_calf.errors import CalfFileExistsError, CalfInputError
from napari_calf.events import Progress
from napari_calf.engine.inference import LoadedRun, iter_predict_volume, predict_volume

MODALITIES = ["t1", "t1ce", "t2", "flair"]


@pytest.fixture(scope="module")
def lps_case(tmp_path_factory) -> tuple[Path, np.ndarray]:
    from _engine_data import write_lps_case  # tests/_engine_data.py

    root = tmp_path_factory.mktemp("lps") / "data"
    _ras, _label, affine = write_lps_case(root, "caseL", seed=1)
    return root / "caseL", affine


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder with an (untrained) network, as `napari-calf train` would leave it."""
    from napari_calf.engine.checkpoints import save_weights
    from napari_calf.config import DataConfig, RunConfig
    from napari_calf.engine.models import build_model
    from napari_calf.engine.run_card import model_info, new_card, preprocessing_info, write_run_card

    import torch

    run = tmp_path_factory.mktemp("run")
    config = RunConfig(data=DataConfig("unused"), out_dir=str(run))
    config = config.replace(model=config.model.__class__("unet", "resnet18", encoder_depth=3))
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", 4, encoder_depth=3)
    save_weights(model, run / "model.safetensors")
    card = new_card(config)
    card.update(model=model_info(config, 4, 0), preprocessing=preprocessing_info(config, tuple(MODALITIES)))
    write_run_card(run, card)
    return run


class ThresholdNet:
    """Stands in for a network: tumour wherever channel 0's z-score exceeds 0.5."""

    def __init__(self) -> None:
        import torch

        class _Net(torch.nn.Module):
            def forward(self, x):
                return 20.0 * (x[:, :1] - 0.5)

        self.module = _Net()


def test_prediction_has_the_inputs_affine_and_shape_on_an_lps_case(lps_case, run_dir, tmp_path) -> None:
    case_dir, affine = lps_case
    stored = nib.load(case_dir / "caseL_t1.nii.gz")
    assert nib.aff2axcodes(stored.affine) == ("L", "P", "S")
    pred = predict_volume(run_dir, case_dir, batch_size=4, device="cpu")
    np.testing.assert_allclose(pred.affine, affine)
    assert pred.labels.shape == stored.shape == pred.probabilities.shape
    assert pred.labels.dtype == np.uint8 and set(np.unique(pred.labels)) <= {0, 1}
    assert 0 <= pred.probabilities.min() and pred.probabilities.max() <= 1

    out = tmp_path / "pred.nii.gz"
    pred.save(out, probabilities_path=tmp_path / "prob.nii.gz")
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, stored.affine, atol=1e-5)
    assert written.shape == stored.shape
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), pred.labels)
    with pytest.raises(CalfFileExistsError):
        pred.save(out)


def test_prediction_matches_a_reference_computed_in_file_space(lps_case) -> None:
    case_dir, _ = lps_case
    run = LoadedRun(model=ThresholdNet().module, card={"preprocessing": {"modalities": MODALITIES}})
    pred = predict_volume(run, case_dir, batch_size=5, device="cpu")
    # the z-score over brain voxels does not depend on orientation, so the expected mask
    # can be computed directly on the array as stored on disk
    t1 = np.asanyarray(nib.load(case_dir / "caseL_t1.nii.gz").dataobj).astype(np.float64)
    z = np.zeros_like(t1)
    brain = t1 != 0
    z[brain] = np.clip(sps.zscore(t1[brain]), -5, 5)
    expected = (z > 0.5).astype(np.uint8)
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(pred.labels, expected)


def test_files_in_any_order_or_4d_give_the_same_prediction(lps_case, tmp_path) -> None:
    case_dir, affine = lps_case
    run = LoadedRun(model=ThresholdNet().module, card={"preprocessing": {"modalities": MODALITIES}})
    ref = predict_volume(run, case_dir, device="cpu")
    shuffled = [case_dir / f"caseL_{m}.nii.gz" for m in ("flair", "t2", "t1", "t1ce")]
    np.testing.assert_array_equal(predict_volume(run, shuffled, device="cpu").labels, ref.labels)
    stack = np.stack([np.asanyarray(nib.load(case_dir / f"caseL_{m}.nii.gz").dataobj)
                      for m in MODALITIES], axis=-1)
    four_d = tmp_path / "case4d.nii.gz"
    nib.save(nib.Nifti1Image(stack, affine), four_d)
    # a 4D file's channels have no names: their order is taken only when asked for
    pred = predict_volume(run, four_d, device="cpu", channel_order="positional")
    np.testing.assert_array_equal(pred.labels, ref.labels)
    np.testing.assert_allclose(pred.affine, affine)


def test_progress_per_batch_and_wrong_modality_count(lps_case) -> None:
    case_dir, _ = lps_case
    run = LoadedRun(model=ThresholdNet().module, card={"preprocessing": {"modalities": MODALITIES}})
    gen = iter_predict_volume(run, case_dir, batch_size=5, device="cpu")
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration:
            break
    assert all(isinstance(e, Progress) and e.stage == "predict" for e in events)
    assert [e.current for e in events] == [1, 2, 3] and events[-1].total == 3  # 12 slices / 5
    three = LoadedRun(model=run.model, card={"preprocessing": {"modalities": ["a", "b", "c"]}})
    with pytest.raises(CalfInputError, match="trained on 3"):
        predict_volume(three, case_dir, device="cpu")
