"""The run card (``run.json``) and the model set-up shared by training and inference.

The card records everything needed to understand and reproduce a run: the full
config, the split by case id, the statistics and CALF's selection with its reason,
the filtering report, the metric history, library versions and the device. Inference
reads the preprocessing and the model from it.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoints import BEST_WEIGHTS, read_run_card, resolve_weights, write_json_atomic
from .checkpoints import RUN_CARD, load_weights
from ..config import RunConfig
from ..errors import CalfCheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

CARD_VERSION = 1


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a run's numbers."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("napari-calf", "torch", "segmentation-models-pytorch", "numpy", "scipy",
                 "nibabel", "safetensors"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def model_info(config: RunConfig, in_channels: int, n_params: int) -> dict[str, Any]:
    """What inference needs to rebuild the network (plus its size)."""
    from .models import canonical_arch

    return {
        "arch": canonical_arch(config.model.arch),
        "encoder": config.model.encoder,
        "encoder_depth": config.model.encoder_depth,
        "in_channels": int(in_channels),
        "classes": 1,
        "parameters": int(n_params),
        "output": "logits; foreground where logit > 0 (probability > 0.5)",
    }


def preprocessing_info(config: RunConfig, modalities: tuple[str, ...],
                       channel_names: dict[str, str] | None = None) -> dict[str, Any]:
    """How slices were made; inference applies exactly this.

    ``channel_names`` (nnU-Net ``dataset.json``: ``"0001" -> "T1Gd"``) lets inference match
    another dataset's channels to these by name rather than by number.
    """
    d = config.data
    return {
        "orientation": "canonical RAS (nibabel.as_closest_canonical)",
        "slice_axis": 2,
        "normalisation": "per case and modality: z-score over non-zero (brain) voxels",
        "clip": d.clip,
        "pad_multiple": d.pad_multiple,
        "padding": "centred, zeros",
        "modalities": list(modalities),
        "channel_names": {m: str(channel_names[m]) for m in modalities
                          if channel_names and m in channel_names},
        "target": d.target,
    }


def write_run_card(run_dir: str | Path, card: dict[str, Any]) -> Path:
    """Write ``run.json`` atomically (stamping the card version and time)."""
    card = dict(card)
    card.setdefault("card_version", CARD_VERSION)
    card["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return write_json_atomic(Path(run_dir) / RUN_CARD, card)


def new_card(config: RunConfig) -> dict[str, Any]:
    return {
        "card_version": CARD_VERSION,
        "tool": "napari-calf",
        "status": "starting",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv) if sys.argv else "",
        "config": config.to_dict(),
        "versions": library_versions(),
    }


def build_model_from_card(card: dict[str, Any]) -> nn.Module:
    """The (untrained) network described by a run card."""
    from .models import build_model

    info = card.get("model") or {}
    try:
        return build_model(
            info["arch"], info["encoder"], int(info["in_channels"]), int(info.get("classes", 1)),
            encoder_depth=int(info.get("encoder_depth", 5)),
        )
    except KeyError as exc:
        raise CalfCheckpointError(
            f"The run card lacks model.{exc.args[0]}; it was not written by a finished "
            "napari-calf training start. Fix: use a run folder made by `napari-calf train`."
        ) from None


def load_run_model(run_dir: str | Path, *, which: str = BEST_WEIGHTS) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's network and load its weights (CPU, eval mode). Never unpickles."""
    run_dir = Path(run_dir).expanduser()
    card = read_run_card(run_dir)
    folder = run_dir if run_dir.is_dir() else run_dir.parent
    path = resolve_weights(run_dir if run_dir.is_file() else folder / which)  # refuse unsafe first
    model = build_model_from_card(card)
    load_state_into(model, path, what=str(path))
    model.eval()
    return model, card


def load_state_into(model: nn.Module, path: str | Path, *, what: str) -> None:
    """Load safetensors weights into ``model``, refusing any mismatch with a clear message."""
    load_state_checked(model, load_weights(path), what=what)


def load_state_checked(model: nn.Module, state: dict[str, Any], *, what: str) -> None:
    """Load a state dict into ``model`` after checking every value is usable.

    Raises
    ------
    CalfCheckpointError
        A tensor the network holds in floating point is stored otherwise (``int8`` …) or
        holds NaN/infinite values (named), or the tensors do not fit the network.
    """
    import torch

    expected = model.state_dict()
    for name, tensor in state.items():
        ref = expected.get(name)
        if ref is None or not ref.is_floating_point():
            continue  # unknown names are reported by the strict load; integer buffers are counts
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            dtype = str(getattr(tensor, "dtype", type(tensor).__name__)).replace("torch.", "")
            raise CalfCheckpointError(
                f"{what}: tensor {name} is stored as {dtype}, but the network holds it in "
                "floating point; converted this way it would predict nonsense. Fix: use the "
                "floating-point weights napari-calf wrote (e.g. another copy of the run)."
            )
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise CalfCheckpointError(
                f"{what}: tensor {name} holds {bad} NaN or infinite value(s) of "
                f"{tensor.numel()}; a network with them predicts nothing useful. Fix: use "
                "another checkpoint (an earlier run, or last.safetensors) or train again."
            )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CalfCheckpointError(
            f"{what}: the weights do not fit this network ({' '.join(first)}). "
            "Fix: use a checkpoint trained with the same architecture, encoder and number of "
            "input modalities."
        ) from None


def check_init_compatible(init: str | Path, model_card: dict[str, Any]) -> Path:
    """Weights file to fine-tune from, after checking the source run used the same network.

    Raises
    ------
    CalfCheckpointError
        Architecture, encoder or input channels differ (the message shows both), or the
        path holds no napari-calf checkpoint.
    """
    path = Path(init).expanduser()
    folder = path if path.is_dir() else path.parent
    weights = resolve_weights(path)
    if (folder / RUN_CARD).is_file():
        other = read_run_card(folder).get("model") or {}
        mismatches = [
            f"{key}: checkpoint {other.get(key)!r} vs this run {model_card[key]!r}"
            for key in ("arch", "encoder", "encoder_depth", "in_channels")
            if key in other and other.get(key) != model_card[key]
        ]
        if mismatches:
            raise CalfCheckpointError(
                f"{path}: cannot fine-tune from this checkpoint: " + "; ".join(mismatches)
                + ". Fix: use the same --arch/--encoder/--encoder-depth and modalities as the "
                "checkpoint's run, or train without --init."
            )
    return weights
