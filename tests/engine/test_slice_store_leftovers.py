"""Temporary slice-store folders of killed trainings are removed, and nothing else is.

A training killed while it prepared its slices leaves a ``.tmp-slices-*`` folder in the
cache (gigabytes for a large dataset). The next cache build removes such leftovers when
their process is gone and they are older than the current process; folders of a running
training, of another machine sharing the cache (unless stale for a week), and anything
not named exactly like ours stay.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np

from napari_calf.events import drain
from napari_calf.engine.slice_store import iter_build_slice_store
from napari_calf.io.files import HOST_TAG

KEY = "0123456789abcdef01234567"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _leftover(cache: Path, name: str, age_s: float) -> Path:
    folder = cache / name
    folder.mkdir(parents=True)
    (folder / "images.npy").write_bytes(b"\0" * 128)
    then = time.time() - age_s
    for p in (folder / "images.npy", folder):
        os.utime(p, (then, then))
    return folder


def test_a_cache_build_removes_orphaned_temporary_stores_only(tmp_path: Path) -> None:
    from _engine_data import write_lps_case
    from napari_calf.io.discovery import discover_cases

    write_lps_case(tmp_path / "data", "caseA", seed=0)
    cases = discover_cases(tmp_path / "data")
    cache = tmp_path / "cache"
    orphan = _leftover(cache, f".tmp-slices-train-{KEY}-{HOST_TAG}-{_dead_pid()}-1", 3600)
    running = _leftover(cache, f".tmp-slices-train-{KEY}-{HOST_TAG}-{os.getpid()}-2", 3600)
    other_host = _leftover(cache, f".tmp-slices-val-{KEY}-elsewhere-{_dead_pid()}-3", 3600)
    stale_other = _leftover(cache, f".tmp-slices-val-{KEY}-elsewhere-4-4", 8 * 86400)
    users = [_leftover(cache, ".tmp-slices-mine", 8 * 86400),
             _leftover(cache, f"tmp-slices-train-{KEY}-{HOST_TAG}-5-5", 8 * 86400)]
    store = drain(iter_build_slice_store(cases, {"caseA": np.array([4, 5])}, mode="disk",
                                         cache_dir=cache))
    left = {p.name for p in cache.iterdir()}
    assert orphan.name not in left and stale_other.name not in left
    assert {running.name, other_host.name, *(u.name for u in users)} <= left
    assert store.location is not None and store.location.name in left
