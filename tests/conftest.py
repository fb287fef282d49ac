"""Test-wide settings.

- ``torch._dynamo`` is imported before any napari canvas exists: under Mesa's
  software OpenGL, triton's bundled LLVM (pulled in by torch._dynamo) clashes with
  the LLVM Mesa already loaded and the process segfaults. The product guards
  against this itself (see ``napari_calf._napari._gl_safety``); importing it here
  keeps tests that bypass the product's entry points safe as well.
- tqdm's monitor thread races with Qt; switch it off.
"""

from __future__ import annotations

import os

os.environ.setdefault("NAPARI_CALF_OFFLINE", "1")  # never reach for a network in tests

try:  # torch is a hard dependency, but keep collection working if it is broken
    import torch._dynamo  # noqa: F401
except Exception:  # pragma: no cover
    pass

import tqdm

tqdm.tqdm.monitor_interval = 0
