"""Resume points of the training loop: committed as one file, restored field by field.

Position in the run (epoch, batch, global step), best metric, history, every RNG and the
weights go into ONE file, ``state.safetensors``, replaced atomically: that is the commit
of a resume point. Only after it are the copies for people written: ``model.safetensors``
(when validation Dice improved), ``last.safetensors`` and the run card, each weights file
stamped with the commit's generation token. A kill between any two writes therefore
leaves the previous resume point or the new one, whole; a resume rewrites a copy whose
token is not the committed one (and ``history.csv``), so nothing stale survives.

A resume point is checked (:func:`.run_schema.check_state`) before any value is used, and
what only the objects can judge (optimizer, scheduler, RNG states) is refused naming the
field.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np

from .checkpoints import BEST_WEIGHTS, HISTORY, LAST_WEIGHTS, RUN_CARD, STATE_TENSORS
from .checkpoints import cpu_unshared, safetensors_metadata, save_weights, write_csv_atomic
from .resume_file import save_training_state
from ..errors import CalfCheckpointError, CalfError


class ResumePoints:
    """Mixed into ``TrainLoop``: uses its model, optimizer, scheduler, RNGs and position."""

    generation: str | None = None  # token of the last committed resume point
    best_generation: str | None = None  # the commit whose weights are the best so far

    def _restore(self, s: dict[str, Any]) -> None:
        """Put a checked resume point (``run_schema.check_state``) back in place; what only
        the objects themselves can judge (optimizer, scheduler, RNG states) is refused
        naming the field."""
        with self._field("optimizer"):
            self.optimizer.load_state_dict(s["optimizer"])
            self._check_optimizer_state()
        with self._field("scheduler"):
            self.scheduler.load_state_dict(s["scheduler"])
        self.generation, self.best_generation = s.get("generation"), s.get("best_generation")
        self.epoch, self.batch, self.step = int(s["epoch"]), int(s["batch"]), int(s["step"])
        self.best_dice, self.best_epoch = s["best_dice"], s["best_epoch"]
        self.since_best = int(s["since_best"])
        self.history = list(s["history"])
        self.epoch_loss = list(s["epoch_loss"])
        self._restore_rngs(s["rng"])

    def _restore_rngs(self, rng: dict[str, Any]) -> None:
        import torch

        with self._field("rng.torch"):
            torch.set_rng_state(rng["torch"])
        with self._field("rng.python"):
            random.setstate(rng["python"])
        with self._field("rng.numpy"):
            np.random.set_state((rng["numpy"][0], np.asarray(rng["numpy"][1], dtype=np.uint32),
                                 *rng["numpy"][2:]))
        with self._field("rng.augment"):
            self.aug_gen.set_state(rng["augment"].to(self.aug_gen.get_state().device))
        if self.cuda and rng.get("cuda") is not None:
            with self._field("rng.cuda"):
                torch.cuda.set_rng_state(rng["cuda"], self.device)

    @contextlib.contextmanager
    def _field(self, name: str) -> Iterator[None]:
        try:
            yield
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
            raise CalfCheckpointError(
                f"{self.run_dir / STATE_TENSORS}: field {name} cannot be restored "
                f"({str(exc).splitlines()[0][:200]}); the resume point is damaged or was "
                f"edited. Fix: start a new run with --init {self.run_dir / LAST_WEIGHTS}."
            ) from None

    def _check_optimizer_state(self) -> None:
        import torch

        for i, param in enumerate(p for g in self.optimizer.param_groups for p in g["params"]):
            for key, value in self.optimizer.state.get(param, {}).items():
                if not isinstance(value, torch.Tensor):
                    continue
                if value.dim() and value.shape != param.shape:
                    raise ValueError(f"state of parameter {i}: {key} has shape "
                                     f"{tuple(value.shape)}, the parameter {tuple(param.shape)}")
                if not bool(torch.isfinite(value).all()):
                    raise ValueError(f"state of parameter {i}: {key} holds NaN or infinity")

    def _state(self, weights: dict[str, Any] | None = None) -> dict[str, Any]:
        import torch

        np_state = np.random.get_state()
        return {
            "generation": self.generation, "best_generation": self.best_generation,
            "model": self.model.state_dict() if weights is None else weights,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "best_dice": self.best_dice, "best_epoch": self.best_epoch,
            "since_best": self.since_best, "history": self.history,
            "epoch_loss": list(self.epoch_loss),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if self.cuda else None,
                "python": random.getstate(),
                "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                "augment": self.aug_gen.get_state().cpu(),
            },
        }

    def _save_resume_point(self, status: str, *, improved: bool = False) -> None:
        """Commit a resume point (one atomic file), then the copies stamped with its token."""
        self.generation = os.urandom(8).hex()
        if improved:
            self.best_generation = self.generation
        # one CPU copy of the (channels-last) weights serves the state and both copies
        weights = cpu_unshared(self.model.state_dict())
        save_training_state(self.run_dir, self._state(weights))  # the commit
        if improved:
            self._save_copy(BEST_WEIGHTS, weights)
        self._save_copy(LAST_WEIGHTS, weights)
        self._write_card(status)

    def _save_copy(self, name: str, weights: dict[str, Any] | None = None) -> None:
        meta = {"generation": str(self.generation), "epoch": str(self.epoch - 1),
                "step": str(self.step)}
        if name == BEST_WEIGHTS:
            meta.update(epoch=str(self.best_epoch), dice=str(self.best_dice))
        save_weights(self.model.state_dict() if weights is None else weights,
                     self.run_dir / name, metadata=meta)

    def _repair_copies(self) -> None:
        """On resume: rewrite what a kill after the last commit left stale."""
        if self.generation is None:
            return
        if safetensors_metadata(self.run_dir / LAST_WEIGHTS).get("generation") != self.generation:
            self._save_copy(LAST_WEIGHTS)
        if (self.best_generation == self.generation and safetensors_metadata(
                self.run_dir / BEST_WEIGHTS).get("generation") != self.generation):
            self._save_copy(BEST_WEIGHTS)
        write_csv_atomic(self.run_dir / HISTORY, self.history)

    def _mark_failed(self, exc: CalfError) -> None:
        """Say in the run card that the run failed, if the card can still be written."""
        try:
            self._write_card("failed", str(exc))
        except (CalfError, OSError):
            raise CalfCheckpointError(
                f"{exc} ({RUN_CARD} could not be marked as failed either.)") from None
