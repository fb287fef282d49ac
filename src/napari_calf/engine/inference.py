"""Predict a whole case slice by slice, batched, back in the input's own orientation.

``predict_volume(run, case)`` applies exactly the preprocessing recorded in the run card
(modality order, z-score over the brain with clipping, padding to a multiple of 32),
predicts every axial slice in batches and returns the probability map and label volume
in the **original** orientation and affine of the input file, ready to be written next
to it (:meth:`Prediction.save`) and to overlay it in any NIfTI viewer.

The preprocessed volume goes to the device once; padding, batching, the sigmoid and
cropping happen there, and the result comes back in one copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import padding_for, stack_modalities
from ..errors import CalfConfigError, CalfInputError
from ..events import Progress, drain

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from ..io.volumes import Volume


@dataclass
class LoadedRun:
    """A trained network with the preprocessing it expects (from a run folder)."""

    model: Any
    card: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None  # the run card it came from, named in errors

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.card.get("preprocessing") or {})

    @property
    def modalities(self) -> list[str]:
        return list(self.preprocessing.get("modalities") or [])

    @property
    def channel_names(self) -> dict[str, str]:
        """Human names of the run's channels where its dataset gave them (nnU-Net)."""
        return dict(self.preprocessing.get("channel_names") or {})


def load_run(run: str | Path) -> LoadedRun:
    """Load a run folder (or its ``model.safetensors``) for prediction. Never unpickles."""
    from .run_card import load_run_model

    model, card = load_run_model(run)
    folder = Path(run).expanduser()
    folder = folder if folder.is_dir() else folder.parent
    return LoadedRun(model=model, card=card, source=folder / "run.json")


@dataclass(frozen=True, eq=False)
class Prediction:
    """A case's prediction.

    Attributes
    ----------
    probabilities : ndarray, float32
        Foreground probability, in the input file's own orientation (shape as stored).
    labels : ndarray, uint8
        ``probabilities > threshold`` as 0/1, same orientation.
    affine : ndarray or None
        The input file's affine (None for in-memory arrays without one).
    canonical_probabilities : ndarray, float32, shape (X, Y, Z)
        The same in canonical RAS (what napari shows next to the loaded case).
    reference : Volume or None
        The input volume the orientation came from.
    """

    probabilities: np.ndarray
    labels: np.ndarray
    affine: np.ndarray | None
    canonical_probabilities: np.ndarray
    reference: Volume | None = None
    threshold: float = 0.5
    case_id: str = ""

    @property
    def canonical_labels(self) -> np.ndarray:
        return (self.canonical_probabilities > self.threshold).astype(np.uint8)

    def save(self, labels_path: str | Path, *, probabilities_path: str | Path | None = None,
             overwrite: bool = False) -> list[Path]:
        """Write the label map (and optionally the probabilities) like the input file.

        Raises
        ------
        CalfFileExistsError
            A target exists and ``overwrite`` is False (checked for both before writing).
        """
        from ..errors import CalfFileExistsError
        from ..io.volumes import save_like, save_volume

        targets = [Path(labels_path)] + ([Path(probabilities_path)] if probabilities_path else [])
        if not overwrite:
            for p in targets:
                if p.exists():
                    raise CalfFileExistsError(p)
        written = []
        if self.reference is not None:
            written.append(save_like(self.canonical_labels, self.reference, labels_path,
                                     overwrite=overwrite))
            if probabilities_path:
                written.append(save_like(self.canonical_probabilities, self.reference,
                                         probabilities_path, overwrite=overwrite))
        else:
            affine = np.eye(4) if self.affine is None else self.affine
            written.append(save_volume(self.labels, labels_path, affine, overwrite=overwrite))
            if probabilities_path:
                written.append(save_volume(self.probabilities, probabilities_path, affine,
                                           overwrite=overwrite))
        return written


# --------------------------------------------------------------------------- inputs


def _load_inputs(case_or_arrays: Any, run: LoadedRun,
                 channel_order: str) -> tuple[list[np.ndarray], Volume | None, str]:
    """(canonical 3D arrays in channel order, reference volume, case id) for any input form.

    Inputs reach the run's channels by name (:func:`.channels.match_channels`); only an
    unnamed (C, X, Y, Z) array is taken as it is, its maker having ordered it.
    """
    from ..io.discovery import Case, LoadedCase, discover_cases, load_case
    from ..io._nifti import is_nifti_path
    from ..io.volumes import load_volume
    from .channels import files_by_token, match_channels

    wanted, wanted_names = run.modalities, run.channel_names

    obj = case_or_arrays
    if isinstance(obj, (str, Path)):
        path = Path(obj).expanduser()
        if path.is_dir():
            cases = discover_cases(path)
            if len(cases) != 1:
                raise CalfInputError(
                    path, f"holds {len(cases)} cases; prediction takes one case at a time.",
                    "give the folder of a single case, or its NIfTI files.",
                )
            obj = cases[0]
        elif is_nifti_path(path):
            vol = load_volume(path, label=False)
            if vol.data.ndim == 4:
                if wanted and channel_order != "positional":
                    raise CalfInputError(
                        path,
                        f"is one 4D file: its {vol.data.shape[-1]} channels carry no names to "
                        f"match to the run's ({', '.join(wanted)}).",
                        "give one file per modality (named after it), or, if the channels "
                        "are in that order, ask for it with --channel-order positional "
                        "(channel_order='positional' in Python).",
                    )
                if wanted and vol.data.shape[-1] != len(wanted):
                    raise CalfInputError(
                        path, f"has {vol.data.shape[-1]} channels, but the model was trained "
                        f"on {len(wanted)} ({', '.join(wanted)}).",
                        "give the same modalities the model was trained with.")
                arrays = [vol.data[..., i] for i in range(vol.data.shape[-1])]
                return arrays, _first_channel_volume(vol), path.name
            obj = [path]
        else:
            raise CalfInputError(path, "is neither a case folder nor a NIfTI file.",
                                 "give a case folder or .nii.gz files.")
    if isinstance(obj, Case):
        obj = load_case(obj)
    if isinstance(obj, LoadedCase):
        shown = {m: p.name for m, p in obj.case.images.items()}
        vols = match_channels(obj.images, wanted, given_names=obj.case.channel_names,
                              wanted_names=wanted_names, channel_order=channel_order,
                              where=obj.case.folder, describe=shown)
        return [v.data for v in vols], vols[0], obj.case.case_id
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(p, (str, Path)) for p in obj):
        files, names, shown = files_by_token([Path(p).expanduser() for p in obj])
        ordered = match_channels(files, wanted, given_names=names, wanted_names=wanted_names,
                                 channel_order=channel_order, where=Path(obj[0]).parent,
                                 describe=shown)
        vols = [load_volume(p, label=False) for p in ordered]
        from ..io.volumes import check_same_grid

        for v in vols[1:]:
            check_same_grid(vols[0], v)
        return [v.data for v in vols], vols[0], Path(obj[0]).name
    if isinstance(obj, Mapping):
        from ..io.volumes import Volume

        values = match_channels({str(k): v for k, v in obj.items()}, wanted,
                                wanted_names=wanted_names, channel_order=channel_order)
        arrays = [np.asarray(v.data if isinstance(v, Volume) else v, dtype=np.float32)
                  for v in values]
        return arrays, values[0] if isinstance(values[0], Volume) else None, "arrays"
    if isinstance(obj, np.ndarray) and obj.ndim == 4:
        return [np.asarray(c, dtype=np.float32) for c in obj], None, "array"
    raise CalfConfigError(
        f"Cannot predict from a {type(obj).__name__}. Fix: pass a case folder, NIfTI file(s), "
        "an io.Case/LoadedCase, a dict modality -> canonical array, or a (C, X, Y, Z) array."
    )


def _first_channel_volume(vol: Volume) -> Volume:
    import dataclasses

    return dataclasses.replace(vol, data=vol.data[..., 0], source_shape=vol.source_shape[:3])


# --------------------------------------------------------------------------- prediction


def iter_predict_volume(
    run_or_model: str | Path | LoadedRun | nn.Module,
    case_or_arrays: Any,
    *,
    batch_size: int = 16,
    device: str = "auto",
    threshold: float = 0.5,
    channel_order: str = "names",
) -> Generator[Progress, None, Prediction]:
    """Predict every axial slice of one case; yields ``Progress("predict", …)`` per batch.

    Parameters
    ----------
    run_or_model : path, LoadedRun or nn.Module
        A run folder (its card gives the preprocessing), a loaded run, or a bare model
        (defaults: clip 5, padding to 32).
    case_or_arrays
        A case folder, NIfTI file(s), an ``io.Case``/``LoadedCase``, a dict
        modality → canonical array/Volume, or a (C, X, Y, Z) canonical array (taken as
        being in the run's modality order).
    batch_size : int
        Slices per forward pass.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` …
    threshold : float
        Probability above which a voxel is labelled foreground.
    channel_order : {"names", "positional"}
        ``"names"`` (default) matches files and modalities to the run's channels by name,
        with the aliases of :data:`.channels.MODALITY_ALIASES`, and refuses inputs it
        cannot match; ``"positional"`` takes them in the order given (and a 4D file's
        channels in their order).

    Returns
    -------
    Prediction
        Slices without any brain (all channels zero) are given probability 0 unseen.

    Raises
    ------
    CalfInputError
        Inputs that cannot be matched to the run's channels (named in the message).
    CalfCheckpointError
        A run card with invalid preprocessing values (e.g. a non-finite clip).
    """
    import torch

    from .devices import configure_for_speed, select_device

    run = run_or_model if isinstance(run_or_model, LoadedRun) else (
        load_run(run_or_model) if isinstance(run_or_model, (str, Path))
        else LoadedRun(model=run_or_model)
    )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CalfConfigError(f"batch_size={batch_size!r} must be a positive integer.")
    from .channels import check_channel_order
    from .run_schema import check_preprocessing

    pre = check_preprocessing(run.preprocessing, run.source)
    check_channel_order(channel_order)
    arrays, reference, case_id = _load_inputs(case_or_arrays, run, channel_order)
    stack = stack_modalities({str(i): a for i, a in enumerate(arrays)}, float(pre.get("clip", 5.0)))
    c, nx, ny, nz = stack.shape
    pad = padding_for((nx, ny), int(pre.get("pad_multiple", 32)))

    dev, _reason = select_device(device)
    configure_for_speed(dev)
    model = run.model.to(dev).eval()
    cuda = dev.type == "cuda"
    channels_last = dev.type in ("cuda", "cpu")  # faster with cuDNN and oneDNN alike
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if cuda and torch.cuda.is_bf16_supported() else contextlib.nullcontext())

    vol = torch.from_numpy(stack).to(dev)  # (C, X, Y, Z)
    has_brain = (vol != 0).flatten(0, 2).any(dim=0).cpu().numpy()  # (Z,)
    todo = np.flatnonzero(has_brain)
    probs = torch.zeros((nz, nx, ny), dtype=torch.float32, device=dev)
    batches = [todo[i : i + batch_size] for i in range(0, todo.size, batch_size)]
    (x0, y0), (x1, y1) = pad.before, pad.after
    with torch.inference_mode():
        for k, idx in enumerate(batches, start=1):
            t = torch.as_tensor(idx, device=dev)
            x = vol.index_select(3, t).permute(3, 0, 1, 2)  # (B, C, X, Y)
            x = torch.nn.functional.pad(x, (y0, y1, x0, x1))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(x)
            p = torch.sigmoid(logits.float())[:, 0]
            probs[t] = pad.crop(p)
            yield Progress("predict", k, len(batches), case_id)
    canonical = probs.permute(1, 2, 0).contiguous().cpu().numpy()
    if reference is not None:
        from ..io.volumes import to_source_orientation

        source = to_source_orientation(canonical, reference)
        affine = reference.source_affine
    else:
        source, affine = canonical, None
    return Prediction(
        probabilities=np.ascontiguousarray(source, dtype=np.float32),
        labels=(source > threshold).astype(np.uint8),
        affine=None if affine is None else np.array(affine),
        canonical_probabilities=canonical,
        reference=reference,
        threshold=threshold,
        case_id=case_id,
    )


def predict_volume(run_or_model: Any, case_or_arrays: Any, **kwargs: Any) -> Prediction:
    """:func:`iter_predict_volume` run to the end (same arguments)."""
    return drain(iter_predict_volume(run_or_model, case_or_arrays, **kwargs))
