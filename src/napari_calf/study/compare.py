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
- :func:`iter_collect` evaluates every finished run on its validation cases (cached
  under ``STUDY/evaluations/``) and hands the results to :mod:`.study_report`.
"""

from __future__ import annotations

import contextlib
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
from ..errors import CalfCheckpointError, CalfConfigError, CalfError, CalfInputError
from ..events import Progress, StopCallback
from .run_health import FINISHED, run_damage, weights_damage

__all__ = [
    "STUDY_JSON", "RUNS_DIR", "EVALUATIONS_DIR", "LOGS_DIR", "FINISHED",
    "PlannedRun", "StudyPlan", "RunRecord", "StudyRunEvent",
    "run_name", "parse_run_name", "plan_study", "run_status", "check_run_matches",
    "iter_run_study", "find_runs", "weights_damage", "iter_collect", "config_differences", "sort_records",
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


# --------------------------------------------------------------------------- collect


@dataclass(frozen=True)
class RunRecord:
    """A finished run of a study, with its evaluation on its validation cases."""

    name: str
    arch: str
    loss: str
    seed: int
    run_dir: Path
    card: dict[str, Any]
    evaluation: Any  # evaluation.RunEvaluation

    @property
    def val_cases(self) -> list[str]:
        return list(((self.card.get("data") or {}).get("split") or {}).get("val") or [])

    @property
    def selection(self) -> dict[str, Any]:
        return dict((self.card.get("data") or {}).get("selection") or {})

    @property
    def statistics(self) -> dict[str, Any]:
        return dict((self.card.get("data") or {}).get("statistics") or {})


def find_runs(study_dir: str | Path) -> tuple[list[tuple[str, Path, dict[str, Any]]], list[str]]:
    """Run folders of a study: (finished runs as (name, folder, card), notes on the rest).

    A damaged run (unreadable card, weights that cannot be loaded) is listed in the notes
    with what is wrong; it never stops the others from being reported.
    """
    root = Path(study_dir) / RUNS_DIR
    if not root.is_dir():
        raise CalfInputError(study_dir, f"has no {RUNS_DIR}/ folder, so it is not a study "
                             "(or none of its runs has started).",
                             "point to the --out folder of `napari-calf compare`, or run the "
                             "plan's commands first.")
    finished, notes = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if parse_run_name(folder.name) is None:
            notes.append(f"{folder.name}: not named <arch>__<loss>__seed<k>, ignored")
            continue
        status = run_status(folder)
        if status != "finished":
            why = run_damage(folder) if (folder / RUN_CARD).is_file() else None
            notes.append(f"{folder.name}: damaged ({why}); left out of the report, and trained "
                         "again when the study's compare command is rerun" if why else
                         f"{folder.name}: not finished ({status}), left out of the report")
            continue
        finished.append((folder.name, folder, read_json(folder / RUN_CARD)))
    return finished, notes


def _evaluation_key(run_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation was made from: if the weights change, it is made again."""
    st = (run_dir / BEST_WEIGHTS).stat()
    best = card.get("best") or {}
    return {"weights_size": st.st_size, "weights_mtime_ns": st.st_mtime_ns,
            "best_epoch": best.get("epoch"), "best_dice": best.get("dice")}


def iter_collect(
    study_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 16,
    labels_from: str | Path | None = None,
) -> Generator[Progress, None, tuple[list[RunRecord], list[str]]]:
    """Evaluate every finished run of a study on its own validation cases.

    Evaluations are cached in ``STUDY/evaluations/<run>.json`` together with what they
    were made from; a run whose weights changed since is evaluated again.

    Parameters
    ----------
    data_dir : path, optional
        The dataset, when it is not where the runs were trained (e.g. runs trained on a
        cluster and collected on a workstation). Default: each run card's ``data_dir``.
    labels_from : path, optional
        Score against these label maps instead of the dataset's (e.g. a phantom's clean
        ``truth/``; every validation case needs one). Cached apart, as
        ``evaluations/<run>.truth.json``.

    Yields
    ------
    Progress
        Stage ``"collect"``, one per run (evaluating a run also yields ``"evaluate"``).

    Returns
    -------
    (records, notes)
    """
    from .evaluation import RunEvaluation, iter_evaluate_run

    study_dir = Path(study_dir).expanduser()
    found, notes = find_runs(study_dir)
    eval_dir = study_dir / EVALUATIONS_DIR
    records: list[RunRecord] = []
    for i, (name, folder, card) in enumerate(found, start=1):
        arch, loss, seed = parse_run_name(name)  # type: ignore[misc]
        cfg = card.get("config") or {}
        cfg_loss = (cfg.get("train") or {}).get("loss")
        if cfg_loss is not None and cfg_loss != loss:
            notes.append(f"{name}: its run card says loss {cfg_loss!r}; the card is used")
            loss = cfg_loss
        key = _evaluation_key(folder, card)
        cache = eval_dir / f"{name}.json"
        if labels_from is not None:
            key["labels_from"] = str(Path(labels_from).expanduser().resolve())
            cache = eval_dir / f"{name}.truth.json"
        evaluation = None
        if cache.is_file():
            with contextlib.suppress(CalfCheckpointError, KeyError, TypeError, ValueError,
                                     AttributeError):
                stored = read_json(cache)
                if stored.get("key") == key:
                    evaluation = RunEvaluation.from_dict(stored["evaluation"])
        if evaluation is None:
            data = Path(data_dir) if data_dir is not None else Path(
                (cfg.get("data") or {}).get("data_dir", ""))
            if not data.is_dir():
                raise CalfInputError(data, f"is not a folder, so run {name} cannot be evaluated "
                                     "on its validation cases.",
                                     "pass the dataset folder with --data DATA.")
            val = list(((card.get("data") or {}).get("split") or {}).get("val") or [])
            try:
                evaluation = yield from iter_evaluate_run(folder, data, case_ids=val or None,
                                                          batch_size=batch_size, device=device,
                                                          labels_from=labels_from,
                                                          require_labels_from=labels_from is not None)
            except CalfError as exc:
                # one run that cannot be evaluated (weights that do not fit, a case gone)
                # is listed; the others are still reported
                notes.append(f"{name}: could not be evaluated, left out of the report "
                             f"({exc})")
                yield Progress("collect", i, len(found), f"{name} (failed)")
                continue
            eval_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(cache, {"run": name, "key": key,
                                      "evaluation": evaluation.to_dict()})
        records.append(RunRecord(name, arch, loss, seed, folder, card, evaluation))
        yield Progress("collect", i, len(found), name)
    return sort_records(records, read_study_json(study_dir)), notes


def sort_records(records: Sequence[RunRecord], info: dict[str, Any] | None) -> list[RunRecord]:
    """Records in the study's order (its --losses and --archs order, then seed); runs
    outside that order follow, by name."""
    info = info or {}
    losses = list(info.get("losses") or [])
    archs = list(info.get("archs") or [])

    def key(r: RunRecord) -> tuple[int, int, int, str]:
        a = archs.index(r.arch) if r.arch in archs else len(archs)
        lo = losses.index(r.loss) if r.loss in losses else len(losses)
        return (a, lo, r.seed, r.name)

    return sorted(records, key=key)


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

