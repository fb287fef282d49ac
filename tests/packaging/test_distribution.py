"""What a user outside this repository downloads: licence, metadata, and a usable sdist."""

from __future__ import annotations

import email.parser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the test environment already has setuptools; no network needed
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
         "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return {"wheel": next(out.glob("*.whl")), "sdist": next(out.glob("*.tar.gz"))}


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def test_wheel_carries_the_licence_and_declares_it_as_spdx(dists) -> None:
    with zipfile.ZipFile(dists["wheel"]) as zf:
        names = zf.namelist()
        licence = next(n for n in names if n.endswith("licenses/LICENSE"))
        assert "BSD 3-Clause" in zf.read(licence).decode()
        # the template's notice travels with the asset it covers
        assert any(n.endswith("MNI_ICBM152_2009_NOTICE.txt") for n in names)
        assert "napari_calf/napari.yaml" in names
        assert "napari_calf/assets/mni152_2009a_2mm.nii.gz" in names
    meta = _metadata(dists["wheel"])
    assert meta["License-Expression"] == "BSD-3-Clause"
    classifiers = meta.get_all("Classifier")
    assert "Framework :: napari" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.1") for c in classifiers)
    assert any(c.startswith("Operating System") for c in classifiers)
    assert meta.get_all("Project-URL")


def test_published_requirements_do_not_cap_torch(dists) -> None:
    """The build machines' torch cap lives in the Makefile, not in what users install."""
    requires = _metadata(dists["wheel"]).get_all("Requires-Dist")
    torchy = [r for r in requires if r.split(">")[0].split("<")[0].split("=")[0].strip()
              in ("torch", "torchvision")]
    assert len(torchy) == 2
    assert not any("<" in r for r in torchy), torchy
    assert any(r.startswith("pyyaml") and "extra == \"test\"" in r for r in requires)


def test_sdist_ships_what_its_tests_need(dists) -> None:
    with tarfile.open(dists["sdist"]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    needed = {"LICENSE", "README.md", "pyproject.toml", "tests/conftest.py",
              "tests/_engine_data.py", "tests/napari/conftest.py"}
    assert needed <= names, needed - names
    # every test module's folder is there, and no build or test output leaked in
    for test in (ROOT / "tests").rglob("test_*.py"):
        assert str(test.relative_to(ROOT)) in names
    assert not any(n.startswith((".venv/", "test-artifacts/")) for n in names)
