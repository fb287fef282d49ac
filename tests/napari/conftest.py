"""napari tests run under Xvfb (``make test`` wraps pytest in xvfb-run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from napari_calf.phantom import dataset as phantom
from napari_calf.events import drain

if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    pytest.skip(
        "napari tests need a display: run them through `make test` (Xvfb)",
        allow_module_level=True,
    )


@pytest.fixture(scope="session")
def phantom3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three right-skewed phantom cases (BraTS-2021 layout) for the training-widget tests."""
    out = tmp_path_factory.getbasetemp() / "calf-phantom3"
    if not (out / "dataset.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        drain(phantom.write_dataset(out, 3, seed=0, skew="right"))
    return out


@pytest.fixture
def dataset(phantom3: Path) -> Path:
    """The shared phantom; test modules that need other data define their own ``dataset``."""
    return phantom3
