"""What a run card and a resume point may hold: types and ranges, checked when read.

Run files are written by napari-calf, but they are plain files: an edit, a disk fault or
a file from elsewhere can put ``in_channels: 1e9``, ``pad_multiple: 0``, ``"four"`` or a
NaN where a number is expected. Each value inference or resume uses is checked here
first, so such a file is refused with a :class:`CalfCheckpointError` that names the file
and the field, instead of failing deep inside torch (or, worse, predicting nonsense).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..config import TARGETS, RunConfig
from ..errors import CalfCheckpointError, CalfConfigError

#: The most input channels a card may claim (MRI sequences of one case, with room to spare).
MAX_IN_CHANNELS = 64
#: The largest padding multiple accepted (encoders downsample by 32 at most).
MAX_PAD_MULTIPLE = 1024
_MT_WORDS = 624  # Mersenne Twister state length (Python's random and numpy's legacy RNG)


class _Field:
    """Raises errors about one file's fields."""

    def __init__(self, path: str | Path) -> None:
        self.path = path

    def bad(self, field: str, value: Any, problem: str) -> CalfCheckpointError:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return CalfCheckpointError(
            f"{self.path}: field {field} = {shown} {problem}; the file is damaged or was "
            "edited. Fix: use the file as napari-calf wrote it (another copy of the run), or "
            "train again."
        )

    def whole(self, field: str, value: Any, low: int, high: int | None = None) -> int:
        ok = type(value) is int and value >= low and (high is None or value <= high)
        if not ok:
            span = f"from {low}" + (f" to {high}" if high is not None else " up")
            raise self.bad(field, value, f"is not a whole number {span}")
        return value

    def number(self, field: str, value: Any, low: float, high: float, *,
               low_open: bool = False) -> float:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and (value > low if low_open else value >= low)
              and value <= high)
        if not ok:
            raise self.bad(field, value, f"is not a finite number in {'(' if low_open else '['}"
                                         f"{low}, {high}]")
        return float(value)

    def text(self, field: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.bad(field, value, "is not a non-empty text")
        return value

    def texts(self, field: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.bad(field, value, "is not a list of names")
        return value

    def mapping(self, field: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.bad(field, value, "is not an object")
        return value


# --------------------------------------------------------------------------- run card


def check_run_card(card: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Check the sections of ``run.json`` that inference and resume use (when present).

    Returns the card unchanged. Raises :class:`CalfCheckpointError` naming the field.
    """
    f = _Field(path)
    f.mapping("config", card.get("config"))
    in_channels = None
    if "model" in card:
        model = f.mapping("model", card["model"])
        f.text("model.arch", model.get("arch"))
        f.text("model.encoder", model.get("encoder"))
        f.whole("model.encoder_depth", model.get("encoder_depth", 5), 3, 5)
        in_channels = f.whole("model.in_channels", model.get("in_channels"), 1, MAX_IN_CHANNELS)
        f.whole("model.classes", model.get("classes", 1), 1, 1)
    if "preprocessing" in card:
        check_preprocessing(card["preprocessing"], path, in_channels=in_channels)
    split = ((card.get("data") or {}) if isinstance(card.get("data"), dict) else {}).get("split")
    if split is not None:
        f.mapping("data.split", split)
        for part in ("train", "val"):
            if part in split:
                f.texts(f"data.split.{part}", split[part])
    return card


def check_preprocessing(pre: Any, path: str | Path | None, *,
                        in_channels: int | None = None) -> dict[str, Any]:
    """Check a card's ``preprocessing``: the values inference applies to every case."""
    f = _Field(path if path is not None else "the run card")
    pre = f.mapping("preprocessing", pre)
    if "clip" in pre:
        f.number("preprocessing.clip", pre["clip"], 0.0, 1e6, low_open=True)
    if "pad_multiple" in pre:
        f.whole("preprocessing.pad_multiple", pre["pad_multiple"], 1, MAX_PAD_MULTIPLE)
    if "modalities" in pre:
        mods = f.texts("preprocessing.modalities", pre["modalities"])
        if len(set(mods)) != len(mods):
            raise f.bad("preprocessing.modalities", mods, "names a modality twice")
        if in_channels is not None and len(mods) != in_channels:
            raise f.bad("preprocessing.modalities", mods,
                        f"does not have model.in_channels = {in_channels} entries")
    names = pre.get("channel_names")
    if names is not None and not (isinstance(names, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in names.items())):
        raise f.bad("preprocessing.channel_names", names, "is not an object of names")
    if "target" in pre and pre["target"] not in TARGETS:
        raise f.bad("preprocessing.target", pre["target"], f"is not one of {', '.join(TARGETS)}")
    return pre


def config_from_card(card: dict[str, Any], path: str | Path) -> RunConfig:
    """The card's ``config`` as a :class:`RunConfig`; any invalid setting is refused as a
    damaged file, naming it (the settings themselves are checked by :mod:`napari_calf.config`)."""
    f = _Field(path)
    cfg = f.mapping("config", card.get("config"))
    for part in ("data", "model", "train"):
        if part in cfg:
            f.mapping(f"config.{part}", cfg[part])
    data, model = cfg.get("data") or {}, cfg.get("model") or {}
    f.text("config.data.data_dir", data.get("data_dir"))
    for key in ("cache_dir", "rules_path"):
        if data.get(key) is not None:
            f.text(f"config.data.{key}", data[key])
    for key in ("arch", "encoder"):
        if key in model:
            f.text(f"config.model.{key}", model[key])
    if model.get("init") is not None:
        f.text("config.model.init", model["init"])
    try:
        return RunConfig.from_dict(cfg)
    except (CalfConfigError, TypeError, ValueError) as exc:
        raise CalfCheckpointError(
            f"{path}: its config is not valid ({exc}); the file is damaged or was edited. "
            "Fix: use the file as napari-calf wrote it, or start a new run."
        ) from None


# --------------------------------------------------------------------------- resume state


def check_state(state: Any, path: str | Path, *, batches_per_epoch: int) -> dict[str, Any]:
    """Check a resume point's position, bookkeeping and RNG states (types, ranges, and
    that position and history agree). Optimizer, scheduler and weights are checked when
    loaded into their objects (see ``_train_loop``)."""
    import torch

    f = _Field(path)
    state = f.mapping("state", state)
    epoch = f.whole("epoch", state.get("epoch"), 1, 10**7)
    batch = f.whole("batch", state.get("batch"), 0, batches_per_epoch)
    step = f.whole("step", state.get("step"), 0)
    if step != (epoch - 1) * batches_per_epoch + batch:
        raise f.bad("step", step, f"does not agree with epoch {epoch}, batch {batch} at "
                                  f"{batches_per_epoch} batches per epoch")
    if state.get("best_dice") is not None:
        f.number("best_dice", state["best_dice"], 0.0, 1.0)
    if state.get("best_epoch") is not None:
        f.whole("best_epoch", state["best_epoch"], 1, epoch)
    f.whole("since_best", state.get("since_best"), 0)
    history = state.get("history")
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history) \
            or len(history) != epoch - 1:
        raise f.bad("history", history, f"is not a list of {epoch - 1} epoch rows")
    loss = state.get("epoch_loss")
    if not (isinstance(loss, list) and len(loss) == 2):
        raise f.bad("epoch_loss", loss, "is not [sum, count]")
    f.number("epoch_loss[0]", loss[0], -1e30, 1e30)
    f.whole("epoch_loss[1]", loss[1], 0)
    for key in ("generation", "best_generation"):
        if state.get(key) is not None:
            f.text(key, state[key])
    for key in ("model", "optimizer", "scheduler"):
        f.mapping(key, state.get(key))

    rng = f.mapping("rng", state.get("rng"))
    for key, size in (("torch", torch.get_rng_state().numel()),
                      ("augment", torch.Generator().get_state().numel())):
        t = rng.get(key)
        if not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1
                and t.numel() == size):
            raise f.bad(f"rng.{key}", t, f"is not a generator state ({size} bytes)")
    cuda = rng.get("cuda")
    if cuda is not None and not (isinstance(cuda, torch.Tensor) and cuda.dtype == torch.uint8):
        raise f.bad("rng.cuda", cuda, "is not a CUDA generator state")
    py = rng.get("python")
    if not (isinstance(py, tuple) and len(py) == 3 and type(py[0]) is int
            and _words(py[1], _MT_WORDS + 1) and (py[2] is None or isinstance(py[2], float))):
        raise f.bad("rng.python", py, "is not a state of Python's random module")
    npy = rng.get("numpy")
    if not (isinstance(npy, list) and len(npy) == 5 and npy[0] == "MT19937"
            and _words(npy[1], _MT_WORDS) and type(npy[2]) is int and 0 <= npy[2] <= _MT_WORDS
            and type(npy[3]) is int and isinstance(npy[4], (int, float))):
        raise f.bad("rng.numpy", npy, "is not a state of numpy's random generator")
    return state


def _words(value: Any, n: int) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == n
            and all(type(w) is int and 0 <= w < 2**32 for w in value))
