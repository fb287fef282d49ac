"""Training: ``iter_train(config)`` yields events and returns a :class:`TrainResult`.

One generator, two drivers (STYLE.md): the CLI drains it with tqdm, the napari widget
runs it in a worker and stops it with ``worker.quit()`` or a stop callback. Both end
the run cleanly at the next batch, keeping the best checkpoint and ``last`` + state
for ``--resume``.

Defaults: AdamW, linear warm-up then cosine decay, early stopping on validation Dice.
On CUDA: bf16 autocast (losses stay float32), channels-last, TF32, cuDNN autotuning,
and no per-step host sync (losses are accumulated on the GPU and read every few steps).
On the CPU: float32, and everything is reproducible from the seed.

Data preparation is in :mod:`.training_data`, batch feeding in :mod:`.batches`,
validation in :mod:`.validation`, the run card in :mod:`.run_card`, the resumable loop
state in :mod:`._train_loop`.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoints import RUN_CARD, STATE_TENSORS, check_free_space, check_run_dir_free
from .checkpoints import prepare_run_dir, read_run_card
from ..config import RunConfig
from ..errors import CalfCheckpointError, CalfInputError
from ..events import StopCallback, drain
from .resume_file import load_training_state
from .training_events import TrainResult

__all__ = ["iter_train", "train", "resume_config", "plan_resume", "ResumePlan",
           "absolute_paths", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _absolute(path: str | Path | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(str(path)))


def absolute_paths(config: RunConfig) -> RunConfig:
    """``config`` with its paths (data, cache, rules, init, run folder) made absolute, so a
    run card means the same from any working directory."""
    d, m = config.data, config.model
    return config.replace(
        data=dataclasses.replace(d, data_dir=_absolute(d.data_dir), cache_dir=_absolute(d.cache_dir),
                                 rules_path=_absolute(d.rules_path)),
        model=dataclasses.replace(m, init=_absolute(m.init)),
        out_dir=_absolute(config.out_dir),
    )


@dataclass(frozen=True)
class ResumePlan:
    """How a run continues: its own config with the allowed changes, and what to tell.

    Attributes
    ----------
    config : RunConfig
        Pass it to :func:`iter_train`.
    changes : dict
        Setting -> (the run's value, the value now used), for each setting changed.
    notes : tuple of str
        Things the user should know (a cache folder not followed, data found elsewhere).
    """

    config: RunConfig
    changes: dict[str, tuple[Any, Any]]
    notes: tuple[str, ...]


def plan_resume(run_dir: str | Path, *, data_dir: str | Path | None = None,
                epochs: int | None = None, device: str | None = None,
                patience: int | None = None, cache_dir: str | Path | None = None,
                store: str | None = None) -> ResumePlan:
    """The config to continue the run in ``run_dir``, and what changed.

    A resumed run keeps every setting that shapes its numbers. Only these may change:
    ``epochs`` (more to extend the run; the cosine schedule then spans the new total),
    ``device``, ``patience`` (0: no early stop), where the data is (``data_dir``, checked
    to hold every case of the run's split) and where the slice cache goes
    (``cache_dir``, ``store``).

    A ``cache_dir`` recorded in the card is followed only inside the cache root
    (``~/.cache/napari-calf``); one elsewhere is replaced by the root and said so in the
    notes (give ``cache_dir`` to use it).

    Raises
    ------
    CalfCheckpointError
        No resume point, or a damaged / edited run card (names the field).
    CalfInputError
        The run's data folder is gone (say where it is with ``data_dir``), or the data
        lacks cases of the run's split (named).
    """
    from .run_schema import config_from_card

    run_dir = Path(run_dir).expanduser()
    card = read_run_card(run_dir)
    if not (run_dir / STATE_TENSORS).is_file():
        raise CalfCheckpointError(
            f"{run_dir}: has no resume point ({STATE_TENSORS}); the run never finished an "
            "epoch or was not saved. Fix: start a new run (optionally --init from its weights)."
        )
    config = config_from_card(card, run_dir / RUN_CARD)
    changes: dict[str, tuple[Any, Any]] = {}
    notes: list[str] = []
    d, t = config.data, config.train

    data = _absolute(data_dir) if data_dir is not None else _absolute(d.data_dir)
    if data_dir is None and not Path(data).is_dir():
        raise CalfInputError(
            data, "is where this run's data was, but there is no folder there now (moved or "
            "renamed?).",
            f"say where the data is: napari-calf train --resume {run_dir} DATA "
            "(data_dir= in Python).")
    _check_cases_present(Path(data), card, run_dir)
    if data != d.data_dir:
        changes["data_dir"] = (d.data_dir, data)

    root = dataclasses.replace(d, cache_dir=None).resolved_cache_dir
    cache = d.cache_dir
    if cache_dir is not None:
        cache = _absolute(cache_dir)
    elif cache is not None and not _inside(Path(cache), root):
        notes.append(f"the run card names the slice cache {cache}, outside the cache root "
                     f"{root}; it is not followed, caches go under {root} (give "
                     f"--cache-dir {cache} to use that folder).")
        cache = None
    if cache_dir is not None and cache != d.cache_dir:  # a dropped one is in the notes
        changes["cache_dir"] = (d.cache_dir, cache)
    new_data = dataclasses.replace(d, data_dir=data, cache_dir=cache,
                                   store=store if store is not None else d.store)
    if new_data.store != d.store:
        changes["store"] = (d.store, new_data.store)

    new_train = t
    for name, value in (("epochs", epochs), ("device", device),
                        ("patience", None if patience == 0 else patience)):
        if (value is not None or (name == "patience" and patience == 0)) and value != getattr(t, name):
            changes[name] = (getattr(t, name), value)
            new_train = dataclasses.replace(new_train, **{name: value})
    return ResumePlan(
        config=config.replace(data=new_data, train=new_train, resume=str(run_dir),
                              out_dir=str(run_dir), overwrite=False),
        changes=changes, notes=tuple(notes))


def resume_config(run_dir: str | Path, *, data_dir: str | Path | None = None,
                  epochs: int | None = None, device: str | None = None,
                  patience: int | None = None, cache_dir: str | Path | None = None,
                  store: str | None = None) -> RunConfig:
    """The config to continue the run in ``run_dir``; pass it to :func:`iter_train`.

    The same as ``plan_resume(...).config`` (see :func:`plan_resume` for the settings that
    may change); its notes go to the log.
    """
    import logging

    plan = plan_resume(run_dir, data_dir=data_dir, epochs=epochs, device=device,
                       patience=patience, cache_dir=cache_dir, store=store)
    for note in plan.notes:
        logging.getLogger(__name__).warning(note)
    return plan.config


def _inside(path: Path, root: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
    except OSError:
        return False


def _check_cases_present(data: Path, card: dict[str, Any], run_dir: Path) -> None:
    from ..io.discovery import discover_cases

    split = (card.get("data") or {}).get("split") or {}
    needed = list(split.get("train") or []) + list(split.get("val") or [])
    have = {c.case_id for c in discover_cases(data) if c.label is not None}
    missing = [cid for cid in needed if cid not in have]
    if missing:
        raise CalfInputError(
            data, f"lacks {len(missing)} labelled case(s) this run trained or validated on: "
            f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}.",
            f"point the resume at the run's dataset (napari-calf train --resume {run_dir} "
            "DATA), or start a new run on this data (optionally --init from this run).")


def _labelled_in_channels(data_dir: str) -> int:
    from ..io.discovery import discover_cases

    cases = [c for c in discover_cases(data_dir) if c.label is not None]
    if not cases:
        raise CalfInputError(
            data_dir, "holds no case with a label file.",
            "add *_seg.nii.gz label maps, or make a sample set with `napari-calf phantom`.",
        )
    return len(cases[0].images)


def import_engine() -> None:
    """Import everything a run imports lazily (torch, smp, the engine's own modules).

    The engine keeps torch and smp out of module import time so that napari and the CLI
    start fast. A GUI calls this in a background thread when its training widget opens:
    imports hold the GIL for long stretches, and done at Start they would stall the GUI.
    """
    import importlib

    for name in ("torch", "segmentation_models_pytorch", "scipy.ndimage", "scipy.stats", "nibabel"):
        importlib.import_module(name)
    for name in ("_train_loop", "_train_state", "resume_file", "run_schema", "run_lock",
                 "channels", "models", "run_card", "training_data", "slice_store", "data",
                 "augment", "batches", "validation", "devices", "inference"):
        importlib.import_module(f"{__package__}.{name}")
    for name in ("calf.losses", "calf.metrics", "io.volumes", "io.discovery"):
        importlib.import_module(f"napari_calf.{name}")


def iter_train(config: RunConfig, *, stop: StopCallback | None = None) -> Generator[Any, None, TrainResult]:
    """Train a segmentation model as ``config`` says.

    Yields
    ------
    Progress
        While measuring and preparing the data (stages ``areas``, ``prepare`` …).
    TrainStarted
        Once, before the first batch: device and why, split, CALF selection, filtering.
    TrainStep
        After every batch: epoch, step, loss, lr, images/s, ETA.
    EpochEnd
        After every epoch: validation loss, Dice (overall and per size bucket), FP rate
        on tumour-free slices, the loss in force.
    TrainNotice
        Occasional messages (e.g. an out-of-memory retry).

    Returns
    -------
    TrainResult

    Raises
    ------
    CalfFileExistsError
        ``out_dir`` holds files and neither ``overwrite`` nor ``resume`` is set.
    CalfCheckpointError
        Another process is training in the run folder (named: pid, host, start), an
        unwritable output folder or too little disk space (before training starts), a
        full disk while training (the last good resume point is kept and the card says
        ``failed``), a mismatched ``--init`` checkpoint, or a damaged run folder on resume.
    CalfTrainingError
        Non-finite loss (names epoch and step; the last good checkpoint is kept) or out
        of GPU memory (suggests a smaller batch).
    """
    # The run folder is held (an OS lock, see run_lock) from before anything in it is read
    # or written until this generator ends, however it ends.
    locks: list[Any] = []
    try:
        return (yield from _iter_train_held(config, stop, locks))
    finally:
        for lock in locks:
            lock.release()


def _iter_train_held(config: RunConfig, stop: StopCallback | None,
                     locks: list[Any]) -> Generator[Any, None, TrainResult]:
    from ._train_loop import TrainLoop
    from .models import build_model, count_parameters
    from .run_card import check_init_compatible, load_state_into, model_info
    from .run_lock import lock_run_folder
    from .training_data import iter_prepare_data

    started = time.monotonic()
    state = None
    card_before: dict[str, Any] | None = None
    if config.resume:
        run_dir = Path(config.resume).expanduser()
        locks.append(lock_run_folder(run_dir))
        card_before = read_run_card(run_dir)
        state = load_training_state(run_dir)
    else:
        config = absolute_paths(config)
        run_dir = Path(config.out_dir)
        check_run_dir_free(run_dir, overwrite=config.overwrite)  # refuses touching nothing

    # Everything that can fail fast does, before minutes of data preparation.
    in_channels = _labelled_in_channels(config.data.data_dir)
    seed_everything(config.train.seed)
    m = config.model
    model = build_model(m.arch, m.encoder, in_channels, 1, m.encoder_weights,
                        encoder_depth=m.encoder_depth)
    minfo = model_info(config, in_channels, count_parameters(model))
    init_weights = check_init_compatible(m.init, minfo) if (m.init and state is None) else None
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    need = 5 * param_bytes + 16 * 2**20  # best + last + optimizer state + margin
    if state is None:
        locks.append(lock_run_folder(run_dir))
        # checked again under the lock: a run that finished meanwhile is not overwritten
        prepare_run_dir(run_dir, overwrite=config.overwrite, need_bytes=need)
    else:
        check_free_space(run_dir, need)
        probe = run_dir / ".write-test"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise CalfCheckpointError(f"{run_dir}: cannot write there ({exc}). Fix: check "
                                      "the folder's permissions.") from None

    data = yield from iter_prepare_data(config)
    if card_before is not None:
        before = (card_before.get("data") or {}).get("split") or {}
        if before and (before.get("train") != data.split.train_ids
                       or before.get("val") != data.split.val_ids):
            raise CalfCheckpointError(
                f"{run_dir}: the dataset's cases changed since this run started (its split "
                "no longer matches), so it cannot be resumed exactly. Fix: start a new run, "
                "optionally with --init from this run's weights."
            )
    if data.train.channels != in_channels:
        raise CalfInputError(config.data.data_dir, "cases differ in their number of modalities.",
                             "give every case the same modalities.")
    notes = [lock.note for lock in locks if lock.note]
    if init_weights is not None:
        load_state_into(model, init_weights, what=str(init_weights))
        notes.append(f"initialised from {init_weights}")
    loop = TrainLoop(config, run_dir, model, minfo, data, state=state,
                     card_before=card_before, notes=notes)
    result = yield from loop.run(stop)
    return TrainResult(**{**result.__dict__, "seconds": time.monotonic() - started})


def train(config: RunConfig, *, stop: StopCallback | None = None, on_event=None) -> TrainResult:
    """:func:`iter_train` run to the end; ``on_event`` gets every event."""
    return drain(iter_train(config, stop=stop), on_event)


def run_card_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RUN_CARD
