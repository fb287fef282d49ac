"""The loss comparison study: plan, run (and resume), and collect many training runs.

A study trains one ordinary run per (architecture, loss, seed) under
``STUDY/runs/<arch>__<loss>__seed<k>/``. Runs that are compared differ only in the loss:
they share the dataset, preprocessing, filtering and schedule, and for a given seed the
case split and the training split's statistics (both depend only on the seed and the
data, see :func:`data.split_cases` and :func:`training_data.iter_prepare_data`).

- :func:`plan_study` turns a base :class:`~napari_calf.config.RunConfig` into the list of
  runs; the CLI writes it as ``napari-calf train`` command lines (``--plan``).
- :func:`iter_run_study` trains the runs one after another in this process, skipping
  finished runs and resuming half-finished ones (the engine's resume).
- :func:`study_jobs.iter_run_commands` runs command lines concurrently, one per device at
  a time (``--devices``).
- :func:`.collect.iter_collect` evaluates every finished run on its validation cases
  (cached under ``STUDY/evaluations/``) and hands the results to :mod:`.report`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.checkpoints import BEST_WEIGHTS, RUN_CARD, STATE_TENSORS, read_json
from ..engine.checkpoints import run_files_present, write_json_atomic
from ..config import RunConfig
from ..errors import CalfCheckpointError, CalfConfigError, CalfError
from ..events import StopCallback
from .run_health import FINISHED, weights_damage

__all__ = [
    "STUDY_JSON", "RUNS_DIR", "EVALUATIONS_DIR", "LOGS_DIR", "FINISHED",
    "PlannedRun", "StudyPlan", "StudyRunEvent",
    "run_name", "parse_run_name", "plan_study", "run_status", "check_run_matches",
    "iter_run_study", "weights_damage", "config_differences",
    "write_study_json", "read_study_json",
]

STUDY_JSON = "study.json"
RUNS_DIR = "runs"
EVALUATIONS_DIR = "evaluations"
LOGS_DIR = "logs"
_NAME = re.compile(r"^(?P<arch>[^_]+(?:_[^_]+)*)__(?P<loss>[^_]+(?:_[^_]+)*)__seed(?P<seed>\d+)$")
#: Settings that may differ between a run and the study's plan without changing results.
_IGNORED = {"out_dir", "overwrite", "resume", "train.device", "data.cache_dir", "data.store",
            "data.data_dir"}


def run_name(arch: str, loss: str, seed: int) -> str:
    """``<arch>__<loss>__seed<k>``: the run's folder name under ``STUDY/runs``."""
    return f"{arch.lower()}__{loss}__seed{int(seed)}"


def parse_run_name(name: str) -> tuple[str, str, int] | None:
    """Inverse of :func:`run_name`; ``None`` for other folder names."""
    m = _NAME.match(name)
    return None if m is None else (m["arch"], m["loss"], int(m["seed"]))


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: which architecture, loss and seed, where, and its full config."""

    name: str
    arch: str
    loss: str
    seed: int
    run_dir: Path
    config: RunConfig


@dataclass(frozen=True)
class StudyPlan:
    """All runs of a study, in the order they are trained (seed, architecture, loss)."""

    study_dir: Path
    data_dir: Path
    losses: tuple[str, ...]
    archs: tuple[str, ...]
    seeds: tuple[int, ...]
    runs: tuple[PlannedRun, ...]
    base: RunConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_dir": str(self.study_dir), "data_dir": str(self.data_dir),
            "losses": list(self.losses), "archs": list(self.archs), "seeds": list(self.seeds),
            "runs": [{"name": r.name, "arch": r.arch, "loss": r.loss, "seed": r.seed,
                      "run_dir": str(r.run_dir)} for r in self.runs],
            "base_config": self.base.to_dict(),
        }


def plan_study(study_dir: str | Path, base: RunConfig, *, losses: Sequence[str],
               archs: Sequence[str], seeds: Sequence[int]) -> StudyPlan:
    """The runs of a study: ``base`` with only ``model.arch``, ``train.loss``,
    ``train.seed`` and the run folder changed.

    Raises
    ------
    CalfConfigError
        An empty or repeated loss/architecture/seed, or an unknown loss or architecture
        (named, with the valid names).
    """
    from ..calf.losses import LOSS_NAMES
    from ..engine.models import canonical_arch
    from ..engine.training import absolute_paths

    losses, archs, seeds = tuple(losses), tuple(a.lower() for a in archs), tuple(int(s) for s in seeds)
    for what, values in (("--losses", losses), ("--archs", archs), ("seeds", seeds)):
        if not values:
            raise CalfConfigError(f"{what} is empty. Fix: give at least one.")
        if len(set(values)) != len(values):
            raise CalfConfigError(f"{what} repeats a value ({', '.join(map(str, values))}). "
                                  "Fix: list each once.")
    bad = [name for name in losses if name not in LOSS_NAMES]
    if bad:
        raise CalfConfigError(f"Unknown loss(es) {', '.join(bad)}. "
                              f"Fix: use names from {', '.join(LOSS_NAMES)}.")
    for arch in archs:
        canonical_arch(arch)  # raises with the valid names
    study_dir = Path(study_dir).expanduser().resolve()
    data_dir = Path(base.data.data_dir).expanduser().resolve()
    # the same absolute paths the engine records in each run card, so they compare equal
    base = absolute_paths(base.replace(data=dataclasses.replace(base.data, data_dir=str(data_dir))))
    runs = []
    for seed in seeds:
        for arch in archs:
            for loss in losses:
                name = run_name(arch, loss, seed)
                run_dir = study_dir / RUNS_DIR / name
                config = base.replace(
                    model=dataclasses.replace(base.model, arch=arch),
                    train=dataclasses.replace(base.train, loss=loss, seed=seed),
                    out_dir=str(run_dir), overwrite=False, resume=None,
                )
                runs.append(PlannedRun(name, arch, loss, seed, run_dir, config))
    return StudyPlan(study_dir, data_dir, losses, archs, seeds, tuple(runs), base)


# --------------------------------------------------------------------------- run state


def run_status(run_dir: str | Path) -> str:
    """What a study does with a run folder.

    Returns
    -------
    str
        ``"missing"`` (no folder or an empty one: start it), ``"finished"`` (skip it),
        ``"resumable"`` (stopped or interrupted after at least one epoch: resume it),
        ``"restart"`` (started but nothing to resume from: start again in place).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not run_files_present(run_dir):
        return "missing"
    if not (run_dir / RUN_CARD).is_file():
        return "restart"
    try:
        card = read_json(run_dir / RUN_CARD)
    except CalfCheckpointError:
        return "restart"
    if not isinstance(card, dict):
        return "restart"
    if card.get("status") in FINISHED and (run_dir / BEST_WEIGHTS).is_file():
        # finished, but weights that cannot be loaded are trained again, not skipped
        return "finished" if weights_damage(run_dir) is None else "restart"
    return "resumable" if (run_dir / STATE_TENSORS).is_file() else "restart"


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Settings that differ between two run configs (as dicts), ignoring where and how
    a run is stored and on which device it runs."""
    fa, fb = _flat(a), _flat(b)
    keys = sorted((set(fa) | set(fb)) - _IGNORED)
    return [f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in keys if fa.get(k) != fb.get(k)]


def check_run_matches(planned: PlannedRun) -> None:
    """Refuse to resume or skip a run folder trained with other settings than planned.

    Raises
    ------
    CalfConfigError
        Names the run and each differing setting.
    """
    path = planned.run_dir / RUN_CARD
    if not path.is_file():
        return
    try:
        card = read_json(path)
    except CalfCheckpointError:
        return  # damaged card: the run is restarted
    diff = config_differences(card.get("config") or {}, planned.config.to_dict())
    if diff:
        raise CalfConfigError(
            f"{planned.run_dir}: this run was trained with other settings than this study "
            f"asks for ({'; '.join(diff[:6])}). Fix: rerun compare with the study's original "
            f"options (see {planned.run_dir.parent.parent / STUDY_JSON}), or use a new --out."
        )


# --------------------------------------------------------------------------- in-process


@dataclass(frozen=True)
class StudyRunEvent:
    """A run of the study starts (``action``: start/resume/restart/skip) or ends
    (``action``: done/failed/stopped, ``message`` says why)."""

    index: int
    total: int
    name: str
    action: str
    message: str = ""


def iter_run_study(plan: StudyPlan, *, device: str | None = None,
                   stop: StopCallback | None = None) -> Generator[Any, None, dict[str, str]]:
    """Train the plan's runs in this process, one after another.

    Finished runs are skipped; interrupted ones resume where they stopped; a run that
    fails (e.g. a non-finite loss) is reported and the study goes on with the next.

    Yields
    ------
    StudyRunEvent, and every event of :func:`training.iter_train` in between.

    Returns
    -------
    dict
        Run name -> ``"skipped"``, ``"done"``, ``"failed: <message>"`` or ``"stopped"``.
    """
    from ..engine.training import iter_train, resume_config

    for run in plan.runs:
        check_run_matches(run)  # all of them before hours of training, not after
    outcome: dict[str, str] = {}
    total = len(plan.runs)
    for i, run in enumerate(plan.runs, start=1):
        status = run_status(run.run_dir)
        if status == "finished":
            outcome[run.name] = "skipped"
            yield StudyRunEvent(i, total, run.name, "skip", "finished earlier")
            continue
        if status == "resumable":
            # the plan's data: the study may have been moved since the run was stopped
            config = resume_config(run.run_dir, device=device, data_dir=run.config.data.data_dir)
            action = "resume"
        else:
            config = run.config.replace(overwrite=status == "restart")
            if device is not None:
                config = config.replace(train=dataclasses.replace(config.train, device=device))
            action = "restart" if status == "restart" else "start"
        yield StudyRunEvent(i, total, run.name, action)
        try:
            result = yield from iter_train(config, stop=stop)
        except CalfError as exc:
            outcome[run.name] = f"failed: {exc}"
            yield StudyRunEvent(i, total, run.name, "failed", str(exc))
            continue
        if result.stopped_by_user:
            outcome[run.name] = "stopped"
            yield StudyRunEvent(i, total, run.name, "stopped", "stopped by the user")
            break
        outcome[run.name] = "done"
        yield StudyRunEvent(i, total, run.name, "done")
    return outcome


def write_study_json(study_dir: str | Path, info: dict[str, Any]) -> Path:
    """Record the study's definition (settings, command) in ``STUDY/study.json``."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(study_dir / STUDY_JSON, info)


def read_study_json(study_dir: str | Path) -> dict[str, Any] | None:
    path = Path(study_dir) / STUDY_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None

