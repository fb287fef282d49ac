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
    """Every module of the core: all files outside the two doors (``_cli``, ``_napari``)."""
    names = []
    for info in pkgutil.walk_packages(napari_calf.__path__, "napari_calf."):
        if info.name.split(".")[1] in ("_cli", "_napari", "__main__"):
            continue
        names.append(info.name)
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
    assert {"napari_calf.errors", "napari_calf.calf.losses", "napari_calf.engine.training",
            "napari_calf.study.compare", "napari_calf.phantom.dataset"} <= set(modules)
    loaded = _modules_after_import("\n".join(f"import {m}" for m in modules))
    gui = sorted(m for m in loaded if m.split(".")[0] in GUI_MODULES)
    assert not gui, f"core modules {modules} imported GUI modules {gui[:10]}"


def test_core_never_imports_tqdm_itself() -> None:
    # smp (through huggingface_hub) imports tqdm, so check our own sources rather than
    # sys.modules: progress bars belong to the CLI, the core only yields events.
    root = Path(napari_calf.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.relative_to(root).parts[0] != "_cli" and re.search(r"^\s*(import tqdm|from tqdm)", path.read_text(), re.M)
    ]
    assert not offenders, f"core modules import tqdm: {offenders}"


def test_part_faces_are_light() -> None:
    """``import napari_calf.calf`` (and the other faces) resolve names on first use only."""
    loaded = _modules_after_import(
        "import napari_calf.io, napari_calf.calf, napari_calf.engine, napari_calf.study, "
        "napari_calf.phantom"
    )
    heavy = {"numpy", "torch", "scipy", "nibabel", "segmentation_models_pytorch"} & loaded
    assert not heavy, f"importing the part faces pulled in {sorted(heavy)}"


def test_faces_export_what_design_promises() -> None:
    from napari_calf import calf, engine, io, phantom, study

    assert callable(calf.imbalance_stats) and callable(calf.select_transform)
    assert callable(calf.get_loss) and callable(calf.dice) and callable(calf.hd95)
    assert callable(io.load_volume) and callable(io.save_like) and callable(io.discover_cases)
    for face in (calf, io, engine, study, phantom):
        missing = [n for n in face.__all__ if not hasattr(face, n)]
        assert not missing, f"{face.__name__} lists names it cannot provide: {missing}"


def test_cli_imports_no_gui() -> None:
    loaded = _modules_after_import("import napari_calf._cli.main as c; c.build_parser()")
    gui = sorted(m for m in loaded if m.split(".")[0] in GUI_MODULES)
    assert not gui, f"the CLI imported GUI modules {gui[:10]}"
    assert "torch" not in loaded, "building the CLI parser must not import torch (keeps --help fast)"
