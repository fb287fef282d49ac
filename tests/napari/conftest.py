"""napari tests run under Xvfb (``make test`` wraps pytest in xvfb-run)."""

from __future__ import annotations

import os

import pytest

if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    pytest.skip(
        "napari tests need a display: run them through `make test` (Xvfb)",
        allow_module_level=True,
    )
