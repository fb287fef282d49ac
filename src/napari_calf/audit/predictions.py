"""Out-of-sample probabilities of every case, optionally averaged over test-time flips.

Each case is predicted by the runs that did not train on it (its fold's run; with reused
runs, every run whose training split lacks it, or all runs for an in-sample case).
With test-time flips the case is also predicted mirrored along x, y and both (the
network is 2D: the flips are in the axial plane) and un-mirrored; the probability is the
mean over runs and flips, and its spread (standard deviation) is kept as uncertainty.

Files (audit contract): ``AUDIT/predictions/<case_id>_prob.nii.gz`` (float32) and, when
more than one prediction was averaged, ``<case_id>_std.nii.gz``, written with
``io.save_like`` on the source grid of the case's label file. ``predictions/index.json``
records what each was made from (runs, their weights' size and time, the flips), so a
resumed audit skips what is done and redoes what changed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_calf.errors import CalfCheckpointError, CalfInputError
from napari_calf.events import Progress, StopCallback

__all__ = ["PREDICTIONS_DIR", "FLIPS", "prob_path", "std_path", "iter_predict_cases",
           "load_prediction"]

PREDICTIONS_DIR = "predictions"
_INDEX = "index.json"
#: In-plane axes mirrored by each test-time flip (canonical x = 0, y = 1).
FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (0, 1))


def prob_path(audit_dir: Path, case_id: str) -> Path:
    return Path(audit_dir) / PREDICTIONS_DIR / f"{case_id}_prob.nii.gz"


def std_path(audit_dir: Path, case_id: str) -> Path:
    return Path(audit_dir) / PREDICTIONS_DIR / f"{case_id}_std.nii.gz"


def _weights_key(run_dir: Path) -> list[Any]:
    from napari_calf.engine.checkpoints import BEST_WEIGHTS

    st = (Path(run_dir) / BEST_WEIGHTS).stat()
    return [str(Path(run_dir).resolve()), st.st_size, st.st_mtime_ns]


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / _INDEX
    with contextlib.suppress(OSError, json.JSONDecodeError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def iter_predict_cases(
    audit_dir: str | Path,
    jobs: Sequence[tuple[Any, Sequence[Path]]],
    *,
    tta: bool = False,
    device: str = "auto",
    batch_size: int = 16,
    stop: StopCallback | None = None,
) -> Generator[Progress, None, dict[str, str]]:
    """Predict each ``(case, run folders)`` job unless an identical prediction exists.

    Parameters
    ----------
    jobs : (io.Case, runs) pairs; the case's probability is the mean over these runs.
    tta : also predict the mirrored case (:data:`FLIPS`) and average.

    Yields
    ------
    Progress
        ``stage="predict"``, one per case (done or skipped).

    Returns
    -------
    dict
        Case id -> ``"done"`` or ``"skipped"`` (``"stopped"`` for the rest after a stop).
    """
    from napari_calf.engine.checkpoints import write_json_atomic
    from napari_calf.engine.inference import iter_predict_volume, load_run
    from napari_calf.events import drain
    from napari_calf.io.discovery import load_case
    from napari_calf.io.volumes import save_like

    folder = Path(audit_dir) / PREDICTIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    index = _read_index(folder)
    flips = FLIPS if tta else FLIPS[:1]
    loaded: dict[Path, Any] = {}
    outcome: dict[str, str] = {}
    total = len(jobs)
    for i, (case, runs) in enumerate(jobs, start=1):
        if stop is not None and stop():
            outcome.update({c.case_id: "stopped" for c, _ in jobs[i - 1:]})
            break
        key = {"runs": [_weights_key(r) for r in runs], "flips": [list(f) for f in flips]}
        target = prob_path(Path(audit_dir), case.case_id)
        if index.get(case.case_id) == key and target.is_file():
            outcome[case.case_id] = "skipped"
            yield Progress("predict", i, total, f"{case.case_id} (done earlier)")
            continue
        data = load_case(case, require_label=True)
        members = []
        for run_dir in runs:
            run = loaded.get(Path(run_dir))
            if run is None:
                run = loaded.setdefault(Path(run_dir), load_run(run_dir))
            for axes in flips:
                arrays = {m: (np.flip(v.data, axes) if axes else v.data)
                          for m, v in data.images.items()}
                pred = drain(iter_predict_volume(run, arrays, batch_size=batch_size,
                                                 device=device))
                prob = pred.canonical_probabilities
                members.append(np.flip(prob, axes) if axes else prob)
        stack = np.stack(members).astype(np.float32)
        mean = np.clip(stack.mean(axis=0), 0.0, 1.0)
        reference = data.label  # present: require_label=True
        save_like(mean, reference, target, overwrite=True)  # type: ignore[arg-type]
        if len(members) > 1:
            save_like(stack.std(axis=0).astype(np.float32), reference,  # type: ignore[arg-type]
                      std_path(Path(audit_dir), case.case_id), overwrite=True)
        else:
            std_path(Path(audit_dir), case.case_id).unlink(missing_ok=True)
        index[case.case_id] = key
        write_json_atomic(folder / _INDEX, index)
        outcome[case.case_id] = "done"
        yield Progress("predict", i, total, case.case_id)
    return outcome


def load_prediction(audit_dir: str | Path, case_id: str,
                    shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The case's probability and spread (None without one), canonical RAS.

    Raises
    ------
    CalfInputError
        The file is missing or not on the label's grid (``shape``).
    """
    from napari_calf.io.volumes import load_volume

    path = prob_path(Path(audit_dir), case_id)
    if not path.is_file():
        raise CalfInputError(path, "is missing.", "run the audit again to predict the case.")
    prob = load_volume(path, label=False).data
    std = None
    if std_path(Path(audit_dir), case_id).is_file():
        std = load_volume(std_path(Path(audit_dir), case_id), label=False).data
    if tuple(prob.shape) != tuple(shape) or (std is not None and std.shape != prob.shape):
        raise CalfInputError(path, f"has shape {prob.shape}, the label {tuple(shape)}.",
                             "delete the predictions folder and run the audit again.")
    return np.clip(prob, 0.0, 1.0), None if std is None else np.clip(std, 0.0, 0.5)


def check_runs_finished(runs: Sequence[Path]) -> None:
    """Refuse to predict with a run that has no best weights yet.

    Raises
    ------
    CalfCheckpointError
        Names the unfinished runs and how to finish them.
    """
    from napari_calf.study.compare import run_status

    unfinished = [str(r) for r in runs if run_status(r) != "finished"]
    if unfinished:
        raise CalfCheckpointError(
            f"{', '.join(unfinished)}: not finished, so it cannot predict its held-out cases. "
            "Fix: run the audit command again (it resumes them), or run their train "
            "commands from the --plan file first.")
