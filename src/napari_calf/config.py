"""Settings for a training run: frozen dataclasses that validate at the boundary.

A run is described by one :class:`RunConfig` made of three parts: what data and how
it is prepared (:class:`DataConfig`), which network (:class:`ModelConfig`) and how it
is optimised (:class:`TrainConfig`). Every config round-trips through JSON
(:meth:`RunConfig.to_dict` / :meth:`RunConfig.from_dict`), which is how the run card
records it and how ``--resume`` and inference recover the exact preprocessing.

Bad values raise :class:`~napari_calf.errors.CalfConfigError` naming the setting,
the problem and the fix, never an ``AssertionError``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CalfConfigError

TARGETS = ("wt", "tc", "et")
UNITS = ("px", "mm2")
STORE_MODES = ("auto", "memory", "disk")
DEVICES = ("auto", "cpu", "cuda", "mps")
DICE_MODES = ("batch", "sample")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise CalfConfigError(
            f"{name}={value!r} is not a valid choice. Fix: use one of {', '.join(choices)}."
        )


def _check_range(
    name: str,
    value: float | int,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        bounds = f"{lo or '(-inf'}, {hi or 'inf)'}"
        raise CalfConfigError(f"{name}={value!r} is out of range. Fix: use a number in {bounds}.")


@dataclass(frozen=True)
class DataConfig:
    """Which cases, which target and how slices are prepared and filtered.

    Attributes
    ----------
    data_dir : str
        Dataset root (BraTS-style or nnU-Net-style case folders, see ``io.discover_cases``).
    target : str
        Binary target: ``"wt"`` whole tumour, ``"tc"`` tumour core, ``"et"`` enhancing tumour.
    unit : str
        Unit of the foreground areas for the statistics: ``"px"`` or ``"mm2"``.
    empty_fraction : float
        Fraction of tumour-free training slices kept (CALF_METHOD §5).
    min_area : float or None
        Training slices with a smaller (non-zero) foreground are dropped and listed.
    outlier_iqr : float or None
        Flag sizes beyond Q3 + k·IQR for review; dropped only if ``drop_outliers``.
    val_fraction : float
        Fraction of cases held out for validation (at least one case).
    val_empty_fraction : float
        Fraction of tumour-free validation slices evaluated (for the false-positive rate).
    max_slices_per_case : int or None
        Cap on training slices per case after filtering (sampled with the seed); a way
        to make small quick runs.
    clip : float
        z-scores are clipped to [-clip, clip].
    pad_multiple : int
        Slices are padded so each in-plane size is a multiple of this (encoders downsample
        by 32).
    cache_dir : str or None
        Where on-disk slice stores live; ``None`` means ``~/.cache/napari-calf``.
    store : str
        ``"auto"`` keeps the slices in memory when they fit comfortably, else a memmap in
        ``cache_dir``; ``"memory"`` / ``"disk"`` force one.
    rules_path : str or None
        A JSON rule table replacing the default CALF selection rules.
    val_cases : tuple of str or None
        Validation cases named explicitly (e.g. one fold of a cross-validation); the
        others are the training split and ``val_fraction`` is not used.
    labels_from : str or None
        A folder of replacement label maps, ``<labels_from>/<case_id>/<label file name>``
        (an audit's ``corrections/`` or a truth folder); cases without one keep theirs.
    """

    data_dir: str
    target: str = "wt"
    unit: str = "px"
    empty_fraction: float = 0.1
    min_area: float | None = None
    outlier_iqr: float | None = None
    drop_outliers: bool = False
    val_fraction: float = 0.2
    val_empty_fraction: float = 0.25
    max_slices_per_case: int | None = None
    clip: float = 5.0
    pad_multiple: int = 32
    cache_dir: str | None = None
    store: str = "auto"
    rules_path: str | None = None
    val_cases: tuple[str, ...] | None = None
    labels_from: str | None = None

    def __post_init__(self) -> None:
        if not str(self.data_dir):
            raise CalfConfigError("data_dir is empty. Fix: give the dataset folder.")
        if self.val_cases is not None:
            if isinstance(self.val_cases, str) or not all(
                    isinstance(c, str) and c for c in self.val_cases):
                raise CalfConfigError(f"val_cases={self.val_cases!r} must be a list of case "
                                      "ids. Fix: e.g. --val-cases BraTS_001,BraTS_002.")
            ids = tuple(self.val_cases)
            if not ids or len(set(ids)) != len(ids):
                raise CalfConfigError(f"val_cases={list(ids)} is empty or repeats a case. "
                                      "Fix: name each validation case once.")
            object.__setattr__(self, "val_cases", ids)  # JSON gives a list: keep one form
        _check_choice("target", self.target, TARGETS)
        _check_choice("unit", self.unit, UNITS)
        _check_choice("store", self.store, STORE_MODES)
        _check_range("empty_fraction", self.empty_fraction, low=0.0, high=1.0)
        _check_range("val_empty_fraction", self.val_empty_fraction, low=0.0, high=1.0)
        _check_range("val_fraction", self.val_fraction, low=0.0, high=1.0, low_open=True,
                     high_open=True)
        _check_range("clip", self.clip, low=0.0, low_open=True)
        if not isinstance(self.pad_multiple, int) or self.pad_multiple < 1:
            raise CalfConfigError(
                f"pad_multiple={self.pad_multiple!r} must be a positive integer. Fix: use 32."
            )
        if self.min_area is not None:
            _check_range("min_area", self.min_area, low=0.0)
        if self.outlier_iqr is not None:
            _check_range("outlier_iqr", self.outlier_iqr, low=0.0, low_open=True)
        if self.max_slices_per_case is not None and (
            not isinstance(self.max_slices_per_case, int) or self.max_slices_per_case < 1
        ):
            raise CalfConfigError(
                f"max_slices_per_case={self.max_slices_per_case!r} must be a positive integer "
                "or unset. Fix: e.g. --max-slices-per-case 40, or leave it out."
            )

    @property
    def resolved_cache_dir(self) -> Path:
        """The cache folder, with the default filled in and ``~`` expanded."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        return Path("~/.cache/napari-calf").expanduser()


@dataclass(frozen=True)
class ModelConfig:
    """Which network (any segmentation-models-pytorch architecture and encoder).

    Attributes
    ----------
    arch : str
        Architecture name, case-insensitive (``unet``, ``fpn``, ``deeplabv3`` …).
    encoder : str
        smp encoder name (``resnet34``, ``mobilenet_v2``, ``efficientnet-b0`` …).
    encoder_weights : str or None
        ``None`` (default, nothing downloaded) or ``"imagenet"``.
    encoder_depth : int
        Encoder stages (3–5); fewer stages make a smaller, faster model.
    init : str or None
        A napari-calf run folder or ``.safetensors`` checkpoint to fine-tune from.
    """

    arch: str = "unet"
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    encoder_depth: int = 5
    init: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.encoder_depth, int) or not 3 <= self.encoder_depth <= 5:
            raise CalfConfigError(
                f"encoder_depth={self.encoder_depth!r} is out of range. Fix: use 3, 4 or 5."
            )
        if self.encoder_weights is not None and self.encoder_weights != "imagenet":
            raise CalfConfigError(
                f"encoder_weights={self.encoder_weights!r} is not supported. "
                "Fix: use none (train from scratch) or 'imagenet'."
            )


@dataclass(frozen=True)
class TrainConfig:
    """How the network is optimised.

    Attributes
    ----------
    loss : str
        ``"calf"`` (selected from the training split's statistics) or a loss name from
        ``losses.LOSS_NAMES``.
    dice_weight : float
        λ in L_CALF = CE_T + λ·SoftDice.
    dice_mode : str
        ``"batch"`` (pooled, default) or ``"sample"``.
    epochs, batch_size : int
        Passes over the training slices; slices per step.
    lr, weight_decay : float
        AdamW settings.
    warmup_fraction : float
        Share of all steps spent in linear learning-rate warm-up before the cosine decay.
    patience : int or None
        Stop when validation Dice has not improved for this many epochs (``None``: never).
    seed : int
        Seeds the split, filtering, shuffling, augmentation and initialisation.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    augment : bool
        Random flips, 90° rotations and mild intensity jitter on the training device.
    amp : bool
        bf16 autocast on CUDA (the loss stays float32). Ignored on CPU.
    oom_retry : bool
        On CUDA out-of-memory, retry once with half the batch (and say so).
    """

    loss: str = "calf"
    dice_weight: float = 1.0
    dice_mode: str = "batch"
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    patience: int | None = 10
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    amp: bool = True
    oom_retry: bool = True

    def __post_init__(self) -> None:
        _check_choice("device", self.device, DEVICES)
        _check_choice("dice_mode", self.dice_mode, DICE_MODES)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CalfConfigError(f"{name}={value!r} must be a positive integer.")
        _check_range("lr", self.lr, low=0.0, low_open=True)
        _check_range("weight_decay", self.weight_decay, low=0.0)
        _check_range("warmup_fraction", self.warmup_fraction, low=0.0, high=1.0, high_open=True)
        _check_range("dice_weight", self.dice_weight, low=0.0)
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise CalfConfigError(
                f"patience={self.patience!r} must be a positive integer or unset (no early stop)."
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise CalfConfigError(f"seed={self.seed!r} must be an integer.")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; recorded in the run card.

    Attributes
    ----------
    out_dir : str
        The run folder to create (weights, run card, history).
    overwrite : bool
        Replace an existing non-empty run folder.
    resume : str or None
        Continue the run in this folder (its own config is used; see
        :func:`napari_calf.engine.training.resume_config`).
    """

    data: DataConfig
    out_dir: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    overwrite: bool = False
    resume: str | None = None

    def __post_init__(self) -> None:
        if not str(self.out_dir):
            raise CalfConfigError("out_dir is empty. Fix: give a folder for the run.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (nested by part); tuples become lists, as in a run card."""
        data = dataclasses.asdict(self)
        if data["data"].get("val_cases") is not None:
            data["data"]["val_cases"] = list(data["data"]["val_cases"])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are refused by name."""
        if not isinstance(data, dict):
            raise CalfConfigError("A run config must be a JSON object.")
        try:
            parts = {
                "data": _part_from_dict(DataConfig, data["data"]),
                "model": _part_from_dict(ModelConfig, data.get("model", {})),
                "train": _part_from_dict(TrainConfig, data.get("train", {})),
            }
            extra = set(data) - {"data", "model", "train", "out_dir", "overwrite", "resume"}
            if extra:
                raise CalfConfigError(
                    f"Unknown run config keys {sorted(extra)}. Fix: remove them."
                )
            return cls(
                out_dir=data["out_dir"],
                overwrite=bool(data.get("overwrite", False)),
                resume=data.get("resume"),
                **parts,
            )
        except KeyError as exc:
            raise CalfConfigError(f"The run config lacks {exc}. Fix: add it.") from None

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalfConfigError(f"The run config is not valid JSON ({exc}).") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with top-level fields changed (``data=``, ``train=`` …)."""
        return dataclasses.replace(self, **changes)


def _part_from_dict(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise CalfConfigError(
            f"Unknown {cls.__name__} settings {sorted(unknown)}. "
            f"Fix: use only {', '.join(sorted(names))}."
        )
    return cls(**data)
