"""Keep torch from crashing the process when napari draws with Mesa's software OpenGL.

The pitfall
-----------
With Mesa's software OpenGL (llvmpipe: Xvfb, CI machines, many remote desktops
and VMs), Mesa loads its own LLVM shared library (``libLLVM-*.so``) as soon as
napari creates a canvas. The first torch optimizer created afterwards imports
``torch._dynamo`` lazily, whose ``has_triton_package()`` runs ``import triton``.
triton ships its own, different LLVM inside ``libtriton.so``; loading it into a
process that already holds Mesa's LLVM kills the process with a segmentation
fault, with no Python traceback. Measured on the build machine (torch 2.14.1,
triton 3.8.0, Mesa llvmpipe with libLLVM-15, napari 0.9.2): viewer first, then
``torch.optim.AdamW(...)`` -> exit code 139; the bare ``import triton`` after the
viewer is enough. The opposite order is safe: triton loaded *before* Mesa's LLVM
(``import torch._dynamo`` before the first canvas) never crashed.

The fix
-------
:func:`ensure_torch_safe_with_gl` puts a small finder at the front of
``sys.meta_path``. When something imports ``triton``, the finder looks at the
shared libraries mapped into the process (``/proc/self/maps``): if an LLVM that
came with OpenGL is loaded (``libLLVM*``, Mesa's ``libgallium*`` or a
``*_dri.so`` driver), the import fails with ``ImportError``, which torch reads as
"triton is not installed", and ``sys.modules["triton"]`` is set to ``None`` so
later ``importlib.util.find_spec("triton")`` calls say the same. Otherwise triton
imports normally. The decision is made at the moment triton would load, so it
holds in every order a user can hit:

- napari first, widget opened later (the usual case): the widget package calls
  the guard on import; Mesa's LLVM is already loaded, triton is blocked at once.
- the guard armed before any canvas, torch used later: the finder decides when
  triton is imported.
- triton already imported before the canvas (e.g. by ``torch.compile``): nothing
  to do, that order is safe.

What a user loses when triton is blocked: ``torch.compile``'s GPU kernels (which
napari-calf does not use) in that napari session only. Eager torch on the CPU or
on CUDA is unaffected. Where CUDA is available and no canvas exists yet,
``ensure_torch_safe_with_gl(preload=True)`` imports ``torch._dynamo`` (and
triton) first instead, so nothing is blocked. Set ``NAPARI_CALF_GL_GUARD=0`` to
switch the guard off (for debugging).

Calling the guard is cheap: it never imports torch unless ``preload=True``, so
``napari_calf._napari.widgets`` calls it on import without slowing napari's
start-up.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

#: Environment switch: ``0`` (or ``off``/``false``) disables the guard.
ENV_SWITCH = "NAPARI_CALF_GL_GUARD"

# Basename prefixes/suffixes of libraries that bring an LLVM into the process for OpenGL.
_GL_LLVM_PREFIXES: tuple[str, ...] = ("libLLVM", "libgallium")
_GL_LLVM_SUFFIXES: tuple[str, ...] = ("_dri.so",)

_lock = threading.Lock()


def _guard_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


def gl_llvm_libraries(maps_path: str | os.PathLike[str] = "/proc/self/maps") -> list[str]:
    """Shared libraries mapped into this process that carry an LLVM for OpenGL.

    Parameters
    ----------
    maps_path : path-like
        The process's memory map (Linux ``/proc/self/maps``); a parameter so tests
        can feed a fixture.

    Returns
    -------
    list of str
        Sorted paths, e.g. ``["/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1"]``;
        empty when none is loaded or the map cannot be read (macOS, Windows),
        where no clash has been seen.
    """
    found: set[str] = set()
    try:
        with open(maps_path, encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) < 6:
                    continue
                path = parts[5].strip()
                name = Path(path).name
                if name.startswith(_GL_LLVM_PREFIXES) or any(
                    s in name for s in _GL_LLVM_SUFFIXES
                ):
                    found.add(path)
    except OSError:
        return []
    return sorted(found)


class _BlockedTritonLoader(importlib.abc.Loader):
    """Loader that refuses to create the module, so ``import triton`` raises ImportError."""

    def __init__(self, libraries: Sequence[str]) -> None:
        self.libraries = tuple(libraries)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        raise ModuleNotFoundError(
            f"napari-calf blocked 'import {spec.name}': OpenGL's LLVM "
            f"({', '.join(self.libraries)}) is loaded in this process and triton's "
            "bundled LLVM would crash it (see napari_calf._napari._gl_safety).",
            name=spec.name,
        )

    def exec_module(self, module: ModuleType) -> None:  # pragma: no cover - never reached
        raise ModuleNotFoundError(f"napari-calf blocked 'import {module.__name__}'")


class TritonGuardFinder(importlib.abc.MetaPathFinder):
    """``sys.meta_path`` entry that blocks triton once OpenGL's LLVM is loaded."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "triton" and not fullname.startswith("triton."):
            return None
        if not _guard_enabled():
            return None
        libraries = gl_llvm_libraries()
        if not libraries:
            return None  # no clash possible now: let the real triton load
        _block_triton(libraries)
        return importlib.machinery.ModuleSpec(fullname, _BlockedTritonLoader(libraries))


_FINDER = TritonGuardFinder()
_warned = False


def _block_triton(libraries: Sequence[str]) -> None:
    """Make every later ``import triton`` fail and ``find_spec('triton')`` return None."""
    global _warned
    # A None entry is Python's own "this module is not available" marker: ``import``
    # raises ModuleNotFoundError and importlib.util.find_spec returns None, which is
    # what torch.cuda's lazy init checks.
    if "triton" not in sys.modules or sys.modules["triton"] is None:
        sys.modules["triton"] = None  # type: ignore[assignment]
    if not _warned:
        _warned = True
        logger.info(
            "triton disabled in this process: OpenGL's LLVM (%s) is loaded and triton's "
            "would crash it. Eager torch is unaffected; torch.compile's GPU kernels are "
            "unavailable in this napari session.",
            ", ".join(libraries),
        )


def triton_state() -> str:
    """``"loaded"``, ``"blocked"`` or ``"not-imported"``: where triton stands in this process."""
    if "triton" not in sys.modules:
        return "not-imported"
    return "blocked" if sys.modules["triton"] is None else "loaded"


def ensure_torch_safe_with_gl(*, preload: bool = False) -> str:
    """Make sure creating a torch optimizer cannot segfault next to a napari canvas.

    Idempotent and cheap (no torch import unless ``preload``); call it when the
    widgets are imported and again right before training starts.

    Parameters
    ----------
    preload : bool
        When no OpenGL LLVM is loaded yet and CUDA is available, import
        ``torch._dynamo`` (and with it triton) now, before any canvas exists, so
        triton stays usable. Imports torch (~1.5 s); ignored once a canvas exists.

    Returns
    -------
    str
        What the guard did: ``"disabled"`` (``NAPARI_CALF_GL_GUARD=0``),
        ``"triton-loaded"`` (triton was already imported: that order is safe),
        ``"triton-blocked"`` (OpenGL's LLVM is loaded: triton now refuses to
        import), ``"triton-preloaded"`` (``preload`` imported it before any canvas)
        or ``"armed"`` (nothing loaded yet; the finder decides at import time).
    """
    if not _guard_enabled():
        return "disabled"
    with _lock:
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
    state = triton_state()
    if state == "loaded":
        return "triton-loaded"
    libraries = gl_llvm_libraries()
    if libraries:
        _block_triton(libraries)
        return "triton-blocked"
    if state == "blocked":
        return "triton-blocked"
    if preload:
        import torch  # noqa: PLC0415 - deliberate: only on request

        if torch.cuda.is_available():
            import torch._dynamo  # noqa: F401, PLC0415 - loads triton while it is safe

            return "triton-preloaded" if triton_state() == "loaded" else "armed"
    return "armed"
