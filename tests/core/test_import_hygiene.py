"""The core never pulls in napari or Qt, and importing the package is instant."""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import napari_calf

GUI_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")


def _core_modules() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(napari_calf.__path__):
        if info.name.startswith("_") or info.name == "cli":
            continue
        names.append(f"napari_calf.{info.name}")
    return sorted(names)


def _modules_after_import(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_package_import_loads_nothing_heavy() -> None:
    loaded = _modules_after_import("import napari_calf")
    heavy = {"numpy", "torch", "scipy", "nibabel", "segmentation_models_pytorch"} & loaded
    assert not heavy, f"`import napari_calf` pulled in {sorted(heavy)}"


def test_core_modules_import_no_gui() -> None:
    modules = _core_modules()
    # the core is more than a handful of modules; guard against an empty walk
    assert {"napari_calf.errors", "napari_calf.events"} <= set(modules)
    loaded = _modules_after_import("\n".join(f"import {m}" for m in modules))
    gui = sorted(m for m in loaded if m.split(".")[0] in GUI_MODULES)
    assert not gui, f"core modules {modules} imported GUI modules {gui[:10]}"


def test_core_never_imports_tqdm_itself() -> None:
    # smp (through huggingface_hub) imports tqdm, so check our own sources rather than
    # sys.modules: progress bars belong to the CLI, the core only yields events.
    root = Path(napari_calf.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.glob("*.py")
        if path.name != "cli.py" and re.search(r"^\s*(import tqdm|from tqdm)", path.read_text(), re.M)
    ]
    assert not offenders, f"core modules import tqdm: {offenders}"


def test_cli_imports_no_gui() -> None:
    loaded = _modules_after_import("import napari_calf.cli as c; c.build_parser()")
    gui = sorted(m for m in loaded if m.split(".")[0] in GUI_MODULES)
    assert not gui, f"the CLI imported GUI modules {gui[:10]}"
    assert "torch" not in loaded, "building the CLI parser must not import torch (keeps --help fast)"
