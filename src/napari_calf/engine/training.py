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

import random
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoints import RUN_CARD, STATE_JSON, check_free_space, load_training_state
from .checkpoints import prepare_run_dir, read_run_card
from ..config import RunConfig
from ..errors import CalfCheckpointError, CalfInputError
from ..events import StopCallback, drain
from .training_events import TrainResult

__all__ = ["iter_train", "train", "resume_config", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resume_config(run_dir: str | Path, *, epochs: int | None = None,
                  device: str | None = None) -> RunConfig:
    """The config to continue the run in ``run_dir`` (optionally with more epochs or
    another device); pass it to :func:`iter_train`."""
    import dataclasses

    run_dir = Path(run_dir).expanduser()
    card = read_run_card(run_dir)
    if not (run_dir / STATE_JSON).is_file():
        raise CalfCheckpointError(
            f"{run_dir}: has no resume state ({STATE_JSON}); the run never finished an epoch "
            "or was not saved. Fix: start a new run (optionally --init from its weights)."
        )
    config = RunConfig.from_dict(card["config"])
    train = config.train
    if epochs is not None:
        train = dataclasses.replace(train, epochs=int(epochs))
    if device is not None:
        train = dataclasses.replace(train, device=device)
    return config.replace(train=train, resume=str(run_dir), out_dir=str(run_dir), overwrite=False)


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
    for name in ("_train_loop", "models", "run_card", "training_data", "slice_store", "data",
                 "augment", "batches", "validation", "devices", "losses", "metrics", "io",
                 "discovery", "inference"):
        importlib.import_module(f"{__package__}.{name}")


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
        Unwritable output folder or too little disk space (before training starts),
        a mismatched ``--init`` checkpoint, or a damaged run folder on resume.
    CalfTrainingError
        Non-finite loss (names epoch and step; the last good checkpoint is kept) or out
        of GPU memory (suggests a smaller batch).
    """

    from ._train_loop import TrainLoop
    from .models import build_model, count_parameters
    from .run_card import check_init_compatible, load_state_into, model_info
    from .training_data import iter_prepare_data

    started = time.monotonic()
    state = None
    card_before: dict[str, Any] | None = None
    if config.resume:
        run_dir = Path(config.resume).expanduser()
        card_before = read_run_card(run_dir)
        state = load_training_state(run_dir)
    else:
        run_dir = Path(config.out_dir).expanduser()

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
    notes: list[str] = []
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
