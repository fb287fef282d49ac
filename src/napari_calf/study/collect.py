"""Collecting a study: every finished run evaluated on its own validation cases.

:func:`iter_collect` finds the runs of ``STUDY/runs/`` (:func:`find_runs`: damaged or
unfinished runs are noted, never fatal), evaluates each finished one on its validation
cases (cached under ``STUDY/evaluations/`` with what the evaluation was made from) and
returns :class:`RunRecord` s in the study's order for :mod:`.report`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.checkpoints import BEST_WEIGHTS, RUN_CARD, read_json, write_json_atomic
from ..errors import CalfCheckpointError, CalfError, CalfInputError
from ..events import Progress
from .compare import EVALUATIONS_DIR, RUNS_DIR, parse_run_name, read_study_json, run_status
from .run_health import run_damage

__all__ = ["RunRecord", "find_runs", "iter_collect", "sort_records"]


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
