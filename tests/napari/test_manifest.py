"""The npe2 manifest: valid, importable, and every contribution points to a declared command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import yaml
from npe2 import PluginManifest


def _manifest_dict() -> dict:
    text = resources.files("napari_calf").joinpath("napari.yaml").read_text()
    return yaml.safe_load(text)


def test_manifest_is_registered_under_the_distribution_name() -> None:
    pm = PluginManifest.from_distribution("napari-calf")
    assert pm.name == "napari-calf"
    assert all(c.id.startswith("napari-calf.") for c in pm.contributions.commands or [])


def test_every_contribution_points_to_a_declared_command() -> None:
    raw = _manifest_dict()["contributions"]
    declared = {c["id"] for c in raw["commands"]}
    referenced: list[tuple[str, str]] = []
    for section in ("readers", "writers", "widgets", "sample_data"):
        for entry in raw.get(section, []) or []:
            referenced.append((section, entry["command"]))
    for menu, items in (raw.get("menus") or {}).items():
        for entry in items:
            if "command" in entry:
                referenced.append((f"menus/{menu}", entry["command"]))
    assert referenced, "the manifest contributes nothing"
    missing = [(s, c) for s, c in referenced if c not in declared]
    assert not missing, f"contributions name undeclared commands: {missing}"
    # and nothing declared is dead weight
    unused = declared - {c for _, c in referenced}
    assert not unused, f"commands declared but never contributed: {sorted(unused)}"


def test_python_names_resolve() -> None:
    pm = PluginManifest.from_distribution("napari-calf")
    for cmd in pm.contributions.commands or []:
        module_name, attr = cmd.python_name.split(":")
        module = __import__(module_name, fromlist=[attr])
        assert callable(getattr(module, attr)), cmd.python_name


def test_npe2_validate_with_imports() -> None:
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent))
    cmd = [npe2] if npe2 else [sys.executable, "-m", "npe2"]
    out = subprocess.run(
        [*cmd, "validate", "napari-calf", "--imports"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
