"""build_model: every named smp architecture, helpful name errors, the offline path."""

from __future__ import annotations

import pytest

from napari_calf.errors import CalfConfigError
from napari_calf.engine.models import ARCHITECTURES, build_model, canonical_arch

REQUIRED = ("unet", "UnetPlusPlus", "fpn", "deeplabv3", "DeepLabV3Plus", "linknet", "PSPNet",
            "manet", "PAN")


@pytest.mark.parametrize("name", REQUIRED)
def test_every_required_architecture_builds_and_outputs_logits(name: str) -> None:
    import segmentation_models_pytorch as smp
    import torch

    model = build_model(name, "resnet18", in_channels=4, encoder_depth=5).eval()
    assert isinstance(model, getattr(smp, canonical_arch(name)))
    # PAN pools the deepest features further, so it needs a larger input than the others
    side = 128 if canonical_arch(name) == "PAN" else 64
    with torch.no_grad():
        out = model(torch.randn(2, 4, side, side))
    assert out.shape == (2, 1, side, side)
    assert model.encoder.conv1.in_channels == 4


def test_names_are_case_insensitive_with_common_spellings() -> None:
    assert canonical_arch("UNET") == "Unet"
    assert canonical_arch("unet++") == "UnetPlusPlus"
    assert canonical_arch("deeplabv3+") == "DeepLabV3Plus"
    assert canonical_arch("deeplab-v3") == "DeepLabV3"
    assert set(ARCHITECTURES) >= {"Unet", "FPN", "PAN", "MAnet"}


def test_wrong_architecture_lists_valid_names_and_close_match() -> None:
    with pytest.raises(CalfConfigError) as err:
        build_model("Unett", "resnet18", 4)
    text = str(err.value)
    assert "Did you mean 'Unet'" in text
    for name in REQUIRED[:5]:
        assert canonical_arch(name) in text


def test_wrong_encoder_lists_smp_names_and_close_match() -> None:
    import segmentation_models_pytorch as smp

    with pytest.raises(CalfConfigError) as err:
        build_model("unet", "resnet19", 4)
    text = str(err.value)
    assert "'resnet18'" in text and "Did you mean" in text
    assert all(n in text for n in smp.encoders.get_encoder_names()[:20])


def test_shallower_encoder_depth_still_maps_input_size_to_output_size() -> None:
    import torch

    model = build_model("unet", "resnet18", 3, encoder_depth=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 128)).shape == (1, 1, 96, 128)


def test_imagenet_weights_offline_say_so_and_how_to_proceed(monkeypatch) -> None:
    import requests
    import segmentation_models_pytorch.encoders as enc

    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise requests.exceptions.ConnectionError("Failed to establish a new connection")

    # the download smp would do; never reach the network in tests
    monkeypatch.setattr(enc, "hf_hub_download", no_network)
    with pytest.raises(CalfConfigError) as err:
        build_model("unet", "resnet18", 4, encoder_weights="imagenet")
    text = str(err.value)
    assert calls, "the download should have been attempted (and failed)"
    assert "no network" in text
    assert "--init" in text and "without pretrained weights" in text


def test_default_builds_without_any_download(monkeypatch) -> None:
    import segmentation_models_pytorch.encoders as enc

    def forbidden(*args, **kwargs):  # pragma: no cover - failing is the point
        raise AssertionError("build_model downloaded weights without being asked")

    monkeypatch.setattr(enc, "hf_hub_download", forbidden)
    model = build_model("fpn", "resnet18", 4)
    import torch

    with torch.no_grad():  # a usable 4-channel, 1-class network: logits per pixel
        assert model.eval()(torch.zeros(1, 4, 64, 64)).shape == (1, 1, 64, 64)
