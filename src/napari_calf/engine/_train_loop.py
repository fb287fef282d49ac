"""The resumable training loop behind :func:`napari_calf.engine.training.iter_train`.

How resume points are committed and restored is in :mod:`._train_state`. The shuffling
of an epoch is a function of (seed, epoch), so a resumed run sees exactly the batches the
uninterrupted one would have: bit-identical on the CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from .augment import AugmentSettings, augment_batch
from .batches import BatchFeeder, epoch_batches
from .checkpoints import BEST_WEIGHTS, HISTORY, LAST_WEIGHTS, STATE_TENSORS, write_csv_atomic
from ..config import RunConfig
from ..errors import CalfCheckpointError, CalfTrainingError
from ..events import StopCallback
from ._train_state import ResumePoints
from .training_data import PreparedData
from .training_events import EpochEnd, TrainNotice, TrainResult, TrainStarted, TrainStep
from .validation import bucket_edges, describe_edges, validate

#: On CUDA the loss is read back every this many steps (each read stalls the GPU queue).
CUDA_SYNC_EVERY = 20


class TrainLoop(ResumePoints):
    """One run's model, optimiser, schedule and position; :meth:`run` is the generator."""

    def __init__(self, config: RunConfig, run_dir: Path, model: Any, model_info: dict[str, Any],
                 data: PreparedData, *, state: dict[str, Any] | None,
                 card_before: dict[str, Any] | None, notes: list[str]) -> None:
        import torch

        from ..calf import losses
        from .devices import configure_for_speed, select_device
        from .run_card import load_state_checked, new_card, preprocessing_info
        from .run_schema import check_state

        self.config = config
        t = config.train
        self.run_dir = run_dir
        self.data = data
        self.batches_per_epoch = len(epoch_batches(len(data.train), t.batch_size, t.seed, 1))
        if state is not None:  # every value checked before any is used
            check_state(state, run_dir / STATE_TENSORS, batches_per_epoch=self.batches_per_epoch)
        self.device, self.device_reason = select_device(t.device)
        self.notes = list(notes) + configure_for_speed(self.device)
        self.cuda = self.device.type == "cuda"
        self.amp_dtype = None
        if self.cuda and t.amp:
            if torch.cuda.is_bf16_supported():
                self.amp_dtype = torch.bfloat16
                self.notes.append("bf16 autocast on (losses in float32), channels-last")
            else:
                self.notes.append("this GPU lacks bf16: training in float32")
        # channels-last is faster on CUDA and with oneDNN on the CPU (measured ~25 % per
        # step for Unet-resnet18 on 96×128 slices); MPS gains nothing from it
        self.channels_last = self.device.type in ("cuda", "cpu")
        if state is not None:
            load_state_checked(model, state["model"], what=f"{run_dir / STATE_TENSORS} (model)")
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()

        kwargs: dict[str, Any] = {}
        if t.loss not in losses.BASELINE_NAMES:
            kwargs = {"dice_weight": t.dice_weight, "dice_mode": t.dice_mode}
        self.loss_fn = losses.get_loss(t.loss, stats=data.stats, rules=data.rules, **kwargs)
        describe = getattr(self.loss_fn, "describe", None)
        self.loss_info = describe() if callable(describe) else {"name": t.loss}
        self.transform = str(self.loss_info.get("transform") or t.loss)

        self.batch_size = min(t.batch_size, len(data.train))
        self.total_steps = t.epochs * self.batches_per_epoch
        warmup = int(round(t.warmup_fraction * self.total_steps))
        fused = {"fused": True} if self.cuda else {}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr,
                                           weight_decay=t.weight_decay, **fused)
        total = self.total_steps
        from .schedule import lr_factor

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total, warmup))
        self.aug_gen = torch.Generator(device=self.device).manual_seed(t.seed)
        self.feeder = BatchFeeder(data.train, self.device)
        self.val_feeder = BatchFeeder(data.val, self.device)
        self.edges = bucket_edges(data.train.areas)

        # position and bookkeeping (restored on resume)
        self.epoch, self.batch, self.step = 1, 0, 0
        self.best_dice: float | None = None
        self.best_epoch: int | None = None
        self.since_best = 0
        self.history: list[dict[str, Any]] = []
        self.epoch_loss = [0.0, 0]  # sum, count of synced step losses this epoch
        self.micro = 1
        self.stopped_early = False
        self.generation = self.best_generation = None  # see ResumePoints
        if state is not None:
            self._restore(state)
            self.notes.append(f"resumed at epoch {self.epoch}, batch {self.batch + 1}")

        self.card = dict(card_before) if card_before else new_card(config)
        self.card.update({
            "config": config.to_dict(),
            "data": data.summary(),
            "model": model_info,
            "loss": self.loss_info,
            "preprocessing": preprocessing_info(config, data.train.modalities,
                                                data.split.train[0].channel_names),
            "augmentation": AugmentSettings().__dict__ if t.augment else None,
            "size_buckets": describe_edges(self.edges, "px"),
            "device": {"name": str(self.device), "reason": self.device_reason,
                       "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None},
            "schedule": {"optimizer": "AdamW", "lr": t.lr, "weight_decay": t.weight_decay,
                         "warmup_steps": warmup, "total_steps": self.total_steps,
                         "steps_per_epoch": self.batches_per_epoch, "decay": "cosine"},
        })

    # ------------------------------------------------------------------ card

    def _write_card(self, status: str, error: str | None = None) -> None:
        from .run_card import write_run_card

        self.card.update({
            "status": status, "error": error, "history": self.history,
            "best": {"dice": self.best_dice, "epoch": self.best_epoch,
                     "weights": BEST_WEIGHTS if self.best_epoch else None},
            "position": {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                         "epochs": self.config.train.epochs},
        })
        write_run_card(self.run_dir, self.card)

    # ------------------------------------------------------------------ steps

    def _forward_backward(self, x: Any, y: Any) -> Any:
        """One optimiser step (in ``self.micro`` chunks); returns the detached loss."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        total = None
        for xs, ys in zip(x.chunk(self.micro), y.chunk(self.micro)):
            autocast = (torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype
                        else contextlib.nullcontext())
            with autocast:
                logits = self.model(xs)
            loss = self.loss_fn(logits.float(), ys)
            if not self.cuda:
                # free on the CPU: refuse a bad loss before it reaches the weights
                value = float(loss.detach())
                if not math.isfinite(value):
                    self._fail_nonfinite(value)
            (loss / self.micro).backward()
            part = loss.detach() / self.micro
            total = part if total is None else total + part
        self.step_lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this step used
        self.optimizer.step()
        self.scheduler.step()
        return total

    def _fail_nonfinite(self, value: float, step: int | None = None, batch: int | None = None) -> None:
        step = self.step + 1 if step is None else step
        batch = self.batch + 1 if batch is None else batch
        kept = (f"the last good checkpoint is kept ({LAST_WEIGHTS}"
                + (f", best {BEST_WEIGHTS} from epoch {self.best_epoch}" if self.best_epoch else "")
                + ")") if (self.run_dir / LAST_WEIGHTS).exists() else "no checkpoint had been saved yet"
        msg = (f"The training loss became {value} at epoch {self.epoch}, step {step} "
               f"(batch {batch} of {self.batches_per_epoch}); training stopped and "
               f"{kept}. Fix: lower the learning rate (--lr), check the data for extreme "
               "values, or try another loss.")
        self._write_card("failed", msg)
        raise CalfTrainingError(msg)

    def _step_with_oom_guard(self, x: Any, y: Any) -> Generator[Any, None, Any]:
        import torch

        try:
            return self._forward_backward(x, y)
        except torch.cuda.OutOfMemoryError:
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            if self.micro == 1 and self.config.train.oom_retry and x.shape[0] >= 2:
                self.micro = 2
                yield TrainNotice(
                    f"Out of GPU memory with batch size {x.shape[0]}; continuing with two "
                    f"half batches of {math.ceil(x.shape[0] / 2)} per step (same effective batch)."
                )
                try:
                    return self._forward_backward(x, y)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
            msg = (f"Out of GPU memory at epoch {self.epoch} with batch size "
                   f"{self.config.train.batch_size}"
                   + (" (also as two half batches)" if self.micro == 2 else "")
                   + ". Fix: use a smaller --batch-size (e.g. half), a smaller --encoder, or "
                   "--device cpu. The last checkpoint is kept.")
            self._write_card("failed", msg)
            raise CalfTrainingError(msg) from None

    # ------------------------------------------------------------------ the run

    def run(self, stop: StopCallback | None) -> Generator[Any, None, TrainResult]:
        t = self.config.train
        d = self.data
        yield TrainStarted(
            run_dir=str(self.run_dir), device=str(self.device), device_reason=self.device_reason,
            resumed=self.step > 0, start_epoch=self.epoch, epochs=t.epochs,
            steps_per_epoch=self.batches_per_epoch, total_steps=self.total_steps,
            batch_size=self.batch_size,
            train_cases=tuple(d.split.train_ids), val_cases=tuple(d.split.val_ids),
            train_slices=len(d.train), val_slices=len(d.val), loss=self.loss_info,
            selection=d.selection.to_dict(), filtering=d.filter_summary,
            model=self.card["model"], notes=tuple(self.notes),
        )
        try:
            self._repair_copies()
            self._write_card("running")
            stopped_by_user = yield from self._epochs(stop)
            if stopped_by_user:
                self._save_resume_point("stopped")
            else:
                self._write_card("early-stopped" if self.stopped_early else "finished")
        except CalfCheckpointError as exc:  # a full disk, an unwritable file: say so in the card
            self._mark_failed(exc)
            raise
        return TrainResult(
            run_dir=self.run_dir, best_dice=self.best_dice, best_epoch=self.best_epoch,
            epochs_done=self.epoch - 1, steps_done=self.step, stopped_early=self.stopped_early,
            stopped_by_user=stopped_by_user, history=tuple(self.history),
        )

    def _epochs(self, stop: StopCallback | None) -> Generator[Any, None, bool]:
        """The epochs still to do; returns True when the user stopped the run."""
        import torch

        t = self.config.train
        d = self.data
        dev = self.device
        run_start_step = self.step
        t_start = time.monotonic()
        stopped_by_user = False
        try:
            while self.epoch <= t.epochs and not self.stopped_early:
                epoch_t0 = time.monotonic()
                batches = epoch_batches(len(d.train), t.batch_size, t.seed, self.epoch)
                win_loss = torch.zeros((), device=dev)
                bad = torch.full((), -1, dtype=torch.long, device=dev)
                win_steps, win_t0, shown_loss, ips = 0, time.monotonic(), float("nan"), 0.0
                todo = batches[self.batch:]
                for idx, (x, y) in zip(todo, self.feeder.iter_batches(todo)):
                    if stop is not None and stop():
                        stopped_by_user = True
                        break
                    if t.augment:
                        x, y = augment_batch(x, y, self.aug_gen)
                    if self.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    loss = yield from self._step_with_oom_guard(x, y)
                    win_loss += loss
                    if self.cuda:
                        bad = torch.where((bad < 0) & ~torch.isfinite(loss), self.step + 1, bad)
                    self.step += 1
                    self.batch += 1
                    win_steps += 1
                    last_of_epoch = self.batch == len(batches)
                    if not self.cuda or win_steps >= CUDA_SYNC_EVERY or last_of_epoch:
                        mean_loss, bad_step = torch.stack([win_loss / win_steps, bad.float()]).tolist()
                        if bad_step >= 0 or not math.isfinite(mean_loss):
                            # read late on CUDA: name the step where it first happened
                            first = int(bad_step) if bad_step >= 0 else self.step
                            self._fail_nonfinite(float("nan"), first,
                                                 self.batch - (self.step - first))
                        now = time.monotonic()
                        ips = win_steps * x.shape[0] / max(now - win_t0, 1e-9)
                        shown_loss = mean_loss
                        self.epoch_loss[0] += mean_loss * win_steps
                        self.epoch_loss[1] += win_steps
                        win_loss.zero_()
                        win_steps, win_t0 = 0, now
                    done = self.step - run_start_step
                    elapsed = time.monotonic() - t_start
                    eta = elapsed / done * (self.total_steps - self.step) if done else None
                    yield TrainStep(
                        epoch=self.epoch, epochs=t.epochs, step=self.step,
                        total_steps=self.total_steps, batch=self.batch,
                        batches=len(batches), loss=shown_loss,
                        lr=self.step_lr, images_per_s=ips, eta_s=eta,
                    )
                if stopped_by_user:
                    break
                yield self._end_epoch(time.monotonic() - epoch_t0)
                if stop is not None and self.epoch <= t.epochs and not self.stopped_early and stop():
                    stopped_by_user = True
                    break
        except GeneratorExit:
            # worker.quit() in the GUI closes the generator at a yield: a consistent point
            with contextlib.suppress(Exception):
                self._save_resume_point("stopped")
            raise
        return stopped_by_user

    def _end_epoch(self, train_seconds: float) -> EpochEnd:
        t = self.config.train
        v0 = time.monotonic()
        res = validate(self.model, self.loss_fn, self.val_feeder, batch_size=self.batch_size,
                       edges=self.edges, amp_dtype=self.amp_dtype,
                       channels_last=self.channels_last)
        improved = self.best_dice is None or res.dice > self.best_dice
        if improved:
            self.best_dice, self.best_epoch, self.since_best = res.dice, self.epoch, 0
        else:
            self.since_best += 1
        train_loss = self.epoch_loss[0] / max(self.epoch_loss[1], 1)
        lr = float(self.scheduler.get_last_lr()[0])
        seconds = train_seconds + (time.monotonic() - v0)
        row = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": res.loss,
               "dice": res.dice, **{f"dice_{k}": v for k, v in res.dice_by_size.items()},
               "fp_rate_empty": res.fp_rate_empty, "lr": lr, "seconds": seconds,
               "loss": self.transform}
        self.history.append(row)
        event = EpochEnd(
            epoch=self.epoch, epochs=t.epochs, train_loss=train_loss, val_loss=res.loss,
            dice=res.dice, dice_by_size=dict(res.dice_by_size), fp_rate_empty=res.fp_rate_empty,
            best_dice=float(self.best_dice), best_epoch=int(self.best_epoch), improved=improved,
            transform=self.transform, lr=lr, seconds=seconds,
            epochs_without_improvement=self.since_best,
        )
        if t.patience is not None and self.since_best >= t.patience:
            self.stopped_early = True
        self.epoch += 1
        self.batch = 0
        self.epoch_loss = [0.0, 0]
        write_csv_atomic(self.run_dir / HISTORY, self.history)
        self._save_resume_point("running", improved=improved)
        return event
