"""Run command lines concurrently, one per device at a time (``compare --devices``).

Each command (``napari-calf train …`` for a study) is a subprocess with its output in a
log file; a device is given to the next command when the previous one on it ends.
Stopping sends SIGINT, on which training saves its resume state, so a stopped study
resumes where it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CalfConfigError
from ..events import StopCallback

__all__ = ["JobEvent", "iter_run_commands", "train_device_args"]


def _child_signals() -> dict[str, Any]:
    """Popen options so that our SIGINT reaches the child as Ctrl-C (KeyboardInterrupt).

    A study started in the background (``nohup … &``) inherits an *ignored* SIGINT, and
    so would its children: they could then not be stopped cleanly. Each child gets the
    default handler back, in its own session so a terminal's Ctrl-C reaches it only
    through us (once), not twice.
    """
    if os.name != "posix":
        return {}
    return {"start_new_session": True,
            "preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}


def train_device_args(device: str) -> tuple[list[str], dict[str, str]]:
    """``napari-calf train`` arguments and environment for one device.

    ``cuda:K`` becomes ``--device cuda`` with ``CUDA_VISIBLE_DEVICES=K``, so each training
    process sees exactly its own GPU (and allocates nothing on the others); any other
    name (``cpu``, ``cuda``, ``mps``) is passed as ``--device``.
    """
    m = re.fullmatch(r"cuda:(\d+)", device.strip())
    if m:
        return ["--device", "cuda"], {"CUDA_VISIBLE_DEVICES": m[1]}
    return ["--device", device.strip()], {}


@dataclass(frozen=True)
class JobEvent:
    """A command of a concurrent study starts on a device or ends (``returncode`` set)."""

    name: str
    device: str
    action: str  # "start" | "end"
    returncode: int | None = None
    log: str = ""


def iter_run_commands(
    jobs: Sequence[tuple[str, Sequence[str]]],
    devices: Sequence[str],
    *,
    log_dir: str | Path,
    device_args: Callable[[str], tuple[list[str], dict[str, str]]] | None = None,
    stop: StopCallback | None = None,
    poll_s: float = 0.2,
) -> Generator[JobEvent, None, dict[str, int]]:
    """Run commands as subprocesses, at most one per device at a time.

    Parameters
    ----------
    jobs : sequence of (name, argv)
        Each command; the arguments from ``device_args(device)`` are appended to its argv
        and its environment additions applied (default :func:`train_device_args`).
    devices : sequence of str
        One slot per entry; repeat a device (``cpu,cpu``) to run two commands on it.
    log_dir : path
        Each command's output goes to ``<log_dir>/<name>.log``.
    stop : callable, optional
        When it returns True, running commands get SIGINT (training saves its resume
        state), no new one starts, and the generator returns.

    Returns
    -------
    dict
        Job name -> return code (commands never started are absent).
    """
    device_args = device_args or train_device_args
    if not devices:
        raise CalfConfigError("--devices is empty. Fix: e.g. --devices cuda:0,cuda:1.")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    queue = list(jobs)
    free = list(devices)
    running: dict[str, tuple[subprocess.Popen[bytes], str, Any]] = {}
    codes: dict[str, int] = {}
    try:
        while queue or running:
            if stop is not None and stop():
                break
            while queue and free:
                name, argv = queue.pop(0)
                dev = free.pop(0)
                log_path = log_dir / f"{name}.log"
                log = open(log_path, "ab")  # noqa: SIM115 - closed when the process ends
                extra, env = device_args(dev)
                proc = subprocess.Popen([*argv, *extra], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                        **_child_signals())
                running[name] = (proc, dev, log)
                yield JobEvent(name, dev, "start", log=str(log_path))
            for name, (proc, dev, log) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                del running[name]
                free.append(dev)
                codes[name] = code
                yield JobEvent(name, dev, "end", code, str(log_dir / f"{name}.log"))
            if running:
                time.sleep(poll_s)
    finally:
        # stopped, interrupted or closed: let every training save its resume state
        for proc, _dev, _log in running.values():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGINT)
        for name, (proc, _dev, log) in running.items():
            try:
                codes[name] = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
            log.close()
    return codes
