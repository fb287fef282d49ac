"""Find the cases in a dataset folder, as the folders come from their sources.

Layouts recognised (nothing has to be renamed):

``brats2021``
    BraTS 2017-2021: ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``; labels 1, 2, 4.
``brats2023``
    BraTS 2023+: ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``; labels 1, 2, 3.
``nnunet``
    nnU-Net raw: ``imagesTr/<case>_0000.nii.gz …`` with ``labelsTr/<case>.nii.gz``, and
    ``imagesTs`` (labels from ``labelsTs`` when present). Modalities are named
    ``"0000"``, ``"0001"`` …; ``dataset.json`` (v1 or v2) gives channel names and the
    label convention.
``generic``
    ``<case>_<modality>.nii.gz`` files, flat or one folder per case, with at most one
    label file per case (``seg``, ``label`` or ``mask`` in its modality part).

``root`` may be the dataset folder or a single case folder; ``.nii`` and ``.nii.gz``
are both accepted. No torch, napari or Qt here.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CalfInputError
from .volumes import MODALITIES_2021, MODALITIES_2023, Volume, check_same_grid, load_volume
from ._nifti import is_nifti_path, nifti_stem
from .labels import ANY_BRATS_LABEL, check_label_values

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("brats2021", "brats2023", "nnunet", "generic")
LABEL_CONVENTIONS: tuple[str, ...] = ("brats2021", "brats2023")

#: Words that mark a file as the case's label map.
LABEL_WORDS: tuple[str, ...] = ("seg", "label", "mask")

#: Known modality names in display order; unknown names follow alphabetically.
_MODALITY_ORDER: tuple[str, ...] = (
    "t1", "t1w", "t1n", "t1ce", "t1c", "t1gd", "t2", "t2w", "flair", "t2f",
)

_LAYOUTS_LOOKED_FOR = (
    "BraTS 2017-2021 (<case>/<case>_t1.nii.gz, _t1ce, _t2, _flair, _seg), "
    "BraTS 2023+ (<case>/<case>-t1n.nii.gz, -t1c, -t2w, -t2f, -seg), "
    "nnU-Net raw (imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz), "
    "generic (<case>_<modality>.nii.gz with one <case>_seg/_label/_mask file per case)"
)


@dataclass(frozen=True)
class Case:
    """One case (patient/exam) of a dataset: where its files are, nothing loaded.

    Attributes
    ----------
    case_id : str
        As named by the source (folder or file prefix), e.g. ``"BraTS2021_00000"``.
    images : dict
        Modality -> file, in a fixed modality order (BraTS order, or ``"0000"``, ``"0001"`` …).
    label : Path or None
        The label map, None when the case has none (fine for prediction).
    layout : str
        One of :data:`LAYOUTS`.
    label_convention : str
        ``"brats2021"`` (enhancing tumour = 4) or ``"brats2023"`` (enhancing tumour = 3).
    channel_names : dict
        Modality -> human name where the dataset gives one (nnU-Net ``dataset.json``),
        e.g. ``{"0000": "T1", "0003": "FLAIR"}``; empty otherwise.
    """

    case_id: str
    images: dict[str, Path]
    label: Path | None
    layout: str
    label_convention: str
    channel_names: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The folder of the case's first file (for messages)."""
        first = next(iter(self.images.values()), None) or self.label
        return first.parent if first is not None else Path(".")

    def display_name(self, modality: str) -> str:
        """``"FLAIR"`` for nnU-Net channel ``"0003"`` when ``dataset.json`` names it, else the key."""
        return self.channel_names.get(modality, modality)


@dataclass(frozen=True, eq=False)
class LoadedCase:
    """A case's volumes in memory, checked to share one grid.

    Attributes
    ----------
    case : Case
    images : dict
        Modality -> :class:`~napari_calf.io.volumes.Volume`, canonical RAS, float32.
    label : Volume or None
        Canonical RAS, integer dtype.
    """

    case: Case
    images: dict[str, Volume]
    label: Volume | None


# --------------------------------------------------------------------------- helpers


def _is_label_token(token: str) -> bool:
    low = token.lower()
    return any(word in low for word in LABEL_WORDS)


def _modality_sort_key(token: str) -> tuple[int, str]:
    low = token.lower()
    if low in _MODALITY_ORDER:
        return (_MODALITY_ORDER.index(low), low)
    return (len(_MODALITY_ORDER), low)


def _nifti_files(folder: Path) -> list[Path]:
    """NIfTI files directly in ``folder``, skipping hidden files and macOS ``._`` shadows."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and is_nifti_path(p)
    )


def _split_stem(stem: str, folder_name: str) -> tuple[str, str]:
    """``(case_id, token)`` of a file stem.

    A case folder's name is the case id when the file starts with it (BraTS ids contain
    ``_`` and ``-`` themselves); otherwise the last ``_`` or ``-`` separates the modality.
    A stem without any separator belongs to the folder's case (``patient7/flair.nii.gz``).
    """
    for sep in ("_", "-"):
        if stem.startswith(folder_name + sep) and len(stem) > len(folder_name) + 1:
            return folder_name, stem[len(folder_name) + 1:]
    cut = max(stem.rfind("_"), stem.rfind("-"))
    if cut <= 0 or cut == len(stem) - 1:
        return folder_name, stem
    return stem[:cut], stem[cut + 1:]


def _classify(tokens: list[str]) -> tuple[str, str, list[str]]:
    """Layout, label convention and modality order from a case's image tokens."""
    low = {t.lower() for t in tokens}
    if low == set(MODALITIES_2021):
        return "brats2021", "brats2021", sorted(tokens, key=lambda t: MODALITIES_2021.index(t.lower()))
    if low == set(MODALITIES_2023):
        return "brats2023", "brats2023", sorted(tokens, key=lambda t: MODALITIES_2023.index(t.lower()))
    convention = "brats2023" if low and low <= set(MODALITIES_2023) else "brats2021"
    return "generic", convention, sorted(tokens, key=_modality_sort_key)


def _attach_orphan_labels(groups: dict[str, dict[str, Path]]) -> None:
    """``p01_tumour_mask`` splits as case ``p01_tumour``; give such a label-only group to the
    case whose id prefixes it (``p01``), the longest such id, instead of losing the label."""
    for orphan_id in [cid for cid, files in groups.items() if all(map(_is_label_token, files))]:
        owners = [
            cid for cid in groups
            if cid != orphan_id and orphan_id.startswith(cid) and orphan_id[len(cid)] in "_-"
        ]
        if not owners:
            continue
        owner = max(owners, key=len)
        for token, path in groups.pop(orphan_id).items():
            groups[owner][f"{orphan_id[len(owner) + 1:]}_{token}"] = path


def _cases_in_folder(folder: Path) -> list[Case]:
    """Cases whose files lie directly in ``folder`` (a case folder, or a flat generic folder)."""
    groups: dict[str, dict[str, Path]] = {}
    for path in _nifti_files(folder):
        case_id, token = _split_stem(nifti_stem(path), folder.name)
        files = groups.setdefault(case_id, {})
        if token in files:
            raise CalfInputError(
                path,
                f"and {files[token].name} both give modality '{token}' of case '{case_id}'.",
                "keep one of the two files in the folder (e.g. drop the .nii copy of a .nii.gz).",
            )
        files[token] = path
    _attach_orphan_labels(groups)
    cases = []
    for case_id, files in groups.items():
        label_tokens = [t for t in files if _is_label_token(t)]
        if len(label_tokens) > 1:
            names = " and ".join(files[t].name for t in sorted(label_tokens))
            raise CalfInputError(
                folder,
                f"case '{case_id}' has several label files ({names}); which one is the label "
                "is ambiguous.",
                "keep one label file per case (e.g. <case>_seg.nii.gz) and move the others away.",
            )
        image_tokens = [t for t in files if t not in label_tokens]
        if not image_tokens:
            log.warning("%s: label file of case %r has no images next to it; skipped",
                        files[label_tokens[0]], case_id)
            continue
        layout, convention, order = _classify(image_tokens)
        images = {(t.lower() if layout != "generic" else t): files[t] for t in order}
        label = files[label_tokens[0]] if label_tokens else None
        cases.append(Case(case_id, images, label, layout, convention))
    return cases


# --------------------------------------------------------------------------- nnU-Net


_NNUNET_IMAGE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _read_dataset_json(root: Path) -> tuple[dict[str, str], str]:
    """Channel names and label convention from nnU-Net's ``dataset.json`` (v1 or v2)."""
    path = root / "dataset.json"
    if not path.is_file():
        return {}, "brats2021"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalfInputError(
            path, f"is not valid JSON ({exc}).", "fix the file or remove it (the defaults are used then)."
        ) from exc
    if not isinstance(meta, dict):
        return {}, "brats2021"
    # v2: "channel_names": {"0": "T1"}; v1: "modality": {"0": "FLAIR"}
    raw_names = meta.get("channel_names") or meta.get("modality") or {}
    names = {}
    if isinstance(raw_names, dict):
        for key, name in raw_names.items():
            if str(key).isdigit():
                names[f"{int(key):04d}"] = str(name)
    # v2: "labels": {"background": 0, "edema": 1, …} (values may be lists for regions);
    # v1: "labels": {"0": "background", "1": "edema", …}
    values: set[int] = set()
    labels = meta.get("labels") or {}
    if isinstance(labels, dict):
        for key, value in labels.items():
            for candidate in (value if isinstance(value, list) else [value]) + [key]:
                if isinstance(candidate, int) or (isinstance(candidate, str) and candidate.isdigit()):
                    values.add(int(candidate))
    low_names = {n.lower() for n in names.values()}
    if 4 in values:
        convention = "brats2021"
    elif values and max(values) == 3 or (low_names and low_names <= set(MODALITIES_2023)):
        convention = "brats2023"
    else:
        convention = "brats2021"
    return names, convention


def _nnunet_cases(root: Path) -> list[Case]:
    names, convention = _read_dataset_json(root)
    cases = []
    for images_dir, labels_dir in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        folder = root / images_dir
        if not folder.is_dir():
            continue
        groups: dict[str, dict[str, Path]] = {}
        for path in _nifti_files(folder):
            match = _NNUNET_IMAGE.match(nifti_stem(path))
            if match is None:
                log.warning("%s: not named <case>_XXXX like nnU-Net images; skipped", path)
                continue
            groups.setdefault(match["case"], {})[match["channel"]] = path
        labels = {}
        if (root / labels_dir).is_dir():
            labels = {nifti_stem(p): p for p in _nifti_files(root / labels_dir)}
        for case_id, files in groups.items():
            images = {c: files[c] for c in sorted(files)}
            cases.append(Case(case_id, images, labels.get(case_id), "nnunet", convention,
                              dict(names)))
    return cases


# --------------------------------------------------------------------------- public API


def discover_cases(root: str | Path) -> list[Case]:
    """All cases under ``root``, sorted by case id.

    Parameters
    ----------
    root : str or Path
        A dataset folder (cases as subfolders, a flat folder, or an nnU-Net raw dataset
        with ``imagesTr``/``labelsTr``), or a single case folder.

    Returns
    -------
    list of Case

    Raises
    ------
    CalfInputError
        ``root`` is missing or not a folder, no case is recognisable (the message lists
        the layouts looked for), two files claim the same case and modality, a case has
        several label files, or two folders hold the same case id.
    """
    root = Path(root)
    if not root.exists():
        raise CalfInputError(root, "does not exist.", "check the path to the dataset folder.")
    if not root.is_dir():
        raise CalfInputError(
            root, "is a file, not a dataset or case folder.",
            "give the folder that holds the case (or the folder of all cases).",
        )
    if root.name in ("imagesTr", "imagesTs", "labelsTr", "labelsTs"):
        root = root.parent  # an nnU-Net subfolder was picked: use the whole dataset
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        cases = _nnunet_cases(root)
    else:
        cases = _cases_in_folder(root)
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            cases.extend(_cases_in_folder(sub))
    seen: dict[str, Case] = {}
    for case in cases:
        if case.case_id in seen:
            raise CalfInputError(
                root,
                f"case id '{case.case_id}' occurs twice: in {seen[case.case_id].folder} and "
                f"in {case.folder}.",
                "keep each case once (remove the copy, or split the dataset into two folders).",
            )
        seen[case.case_id] = case
    if not cases:
        raise CalfInputError(
            root,
            "holds no case napari-calf recognises (it looked in the folder and its "
            f"subfolders for: {_LAYOUTS_LOOKED_FOR}).",
            "point to the dataset or case folder as it came from its source, or name the "
            "files <case>_<modality>.nii.gz with one <case>_seg.nii.gz per case.",
        )
    return sorted(cases, key=lambda c: c.case_id)


def _missing_label_fix(case: Case) -> str:
    if case.layout == "nnunet":
        return f"add labelsTr/{case.case_id}.nii.gz (or leave this case out of training)."
    sep = "-" if case.layout == "brats2023" else "_"
    return (
        f"add {case.case_id}{sep}seg.nii.gz next to its images (a file with seg, label or "
        "mask in its name), or leave this case out of training."
    )


def load_case(case: Case, *, require_label: bool = False) -> LoadedCase:
    """Load a case's images (float32) and label (integer), checked to share one grid.

    Parameters
    ----------
    case : Case
    require_label : bool
        Refuse a case without a label (training needs one); prediction does not.

    Returns
    -------
    LoadedCase

    Raises
    ------
    CalfInputError
        Any file unreadable (see :func:`~napari_calf.io.load_volume`), a missing label
        when ``require_label``, label values no BraTS convention uses, or files that differ in shape or affine (by more than
        1e-3 mm): the message names both files.
    """
    if require_label and case.label is None:
        raise CalfInputError(
            case.folder,
            f"case '{case.case_id}' has no label file; training needs one.",
            _missing_label_fix(case),
        )
    images = {m: load_volume(p, label=False) for m, p in case.images.items()}
    label = load_volume(case.label, label=True) if case.label is not None else None
    if label is not None:
        # Values outside every BraTS convention would be counted as tumour (or dropped)
        # downstream without a word; the target's own check (tc/et) is stricter.
        check_label_values(label.data, ANY_BRATS_LABEL, case.label, case.label_convention)
    volumes = list(images.values()) + ([label] if label is not None else [])
    for other in volumes[1:]:
        check_same_grid(volumes[0], other)
    return LoadedCase(case=case, images=images, label=label)
