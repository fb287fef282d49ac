"""The Mesa/triton guard, exercised in the order a user hits it.

Each scenario runs in a fresh interpreter: a segfault then fails the test instead
of killing pytest, and ``tests/conftest.py``'s early ``import torch._dynamo``
(which hides the bug in-process) does not apply there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from napari_calf._napari._gl_safety import gl_llvm_libraries

_SHOW_VIEWER = """
import napari
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=True)
viewer.add_image(__import__("numpy").zeros((8, 16, 16), "float32"))
QApplication.processEvents()
print("canvas up", flush=True)
"""

_TRAIN_ONE_STEP = """
import torch

model = torch.nn.Linear(3, 1)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model(torch.randn(4, 3)).sum().backward()
optimizer.step()
print("optimizer step done", flush=True)
viewer.close()
"""


def _run(script: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("NAPARI_CALF_GL_GUARD", None)
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr (tail):\n{proc.stderr[-3000:]}"


def test_widget_opened_after_the_canvas_then_training_does_not_crash() -> None:
    """The usual order: napari is open, the user opens a widget, then trains."""
    proc = _run(
        _SHOW_VIEWER
        + """
import napari_calf._napari.widgets.analysis  # what napari does when the dock opens
from napari_calf._napari._gl_safety import gl_llvm_libraries, triton_state
print("triton:", triton_state(), "gl-llvm:", bool(gl_llvm_libraries()), flush=True)
"""
        + _TRAIN_ONE_STEP
    )
    assert proc.returncode == 0, _describe(proc)
    assert "optimizer step done" in proc.stdout, _describe(proc)
    # Under Mesa's LLVM the guard must have blocked triton before torch asked for it.
    if "gl-llvm: True" in proc.stdout:
        assert "triton: blocked gl-llvm: True" in proc.stdout, _describe(proc)


def test_guard_armed_before_the_canvas_still_protects() -> None:
    """Guard first (e.g. a script), canvas later, optimizer last: decided at import time."""
    proc = _run(
        """
from napari_calf._napari._gl_safety import ensure_torch_safe_with_gl
print("guard:", ensure_torch_safe_with_gl(), flush=True)
"""
        + _SHOW_VIEWER
        + _TRAIN_ONE_STEP
    )
    assert proc.returncode == 0, _describe(proc)
    assert "guard: armed" in proc.stdout, _describe(proc)
    assert "optimizer step done" in proc.stdout, _describe(proc)


def test_control_without_the_guard_documents_the_crash() -> None:
    """The bug itself: canvas first, optimizer second, no guard -> segfault inside triton.

    Documents why the guard exists. Skipped (not failed) where the GL stack does
    not bring its own LLVM (hardware OpenGL, or a Mesa without llvmpipe).
    """
    proc = _run(
        _SHOW_VIEWER
        + """
from napari_calf._napari._gl_safety import gl_llvm_libraries
print("gl llvm:", gl_llvm_libraries(), flush=True)
"""
        + _TRAIN_ONE_STEP
    )
    if proc.returncode == 0:
        pytest.skip(
            "no crash without the guard on this machine (its OpenGL does not load an LLVM "
            "that clashes with triton's); the guarded tests above still ran. "
            + proc.stdout.strip().replace("\n", "; ")
        )
    assert "canvas up" in proc.stdout, _describe(proc)
    assert "optimizer step done" not in proc.stdout
    assert proc.returncode in (-11, 139), _describe(proc)  # SIGSEGV
    assert "triton" in proc.stderr, "faulthandler should show the crash inside triton's import"


def test_importing_the_widgets_package_does_not_import_torch() -> None:
    """The guard runs at napari start-up cost: it must not pull in torch (~1.5 s)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, napari_calf._napari.widgets as w; "
            "print('torch' in sys.modules, 'triton' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_gl_llvm_libraries_reads_the_process_map(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1\n"
        "7f01-7f02 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so\n"
        "7f02-7f03 r-xp 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/libGLX_mesa.so.0\n"
        "7f03-7f04 rw-p 00000000 00:00 0 \n"
        "7f04-7f05 r-xp 00000000 08:01 4 /usr/lib/libtorch_cpu.so\n"
    )
    assert gl_llvm_libraries(maps) == [
        "/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so",
        "/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1",
    ]
    assert gl_llvm_libraries(tmp_path / "missing") == []  # no /proc (macOS, Windows)
