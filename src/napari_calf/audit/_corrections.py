"""Where review decisions and corrected labels go: ``AUDIT/corrections/``, never the original.

Layout (the audit folder contract, ``docs/_design_auditgui.md``)::

    corrections/<case_id>/<original label file name>   corrected label, source grid and dtype
    corrections/corrections.json                      {"version": 1, "audit": "..", "decisions": [...],
                                                       "history": [...]}   (undo, newest last)
    corrections/.history/<n>-<file name>              a corrected label as it was before decision n

A decision for an issue replaces the earlier one for the same issue; every file is written
atomically (a temporary file moved into place), so a crash leaves the previous state.
Public through :mod:`napari_calf.audit.review`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_calf.errors import CalfInputError
from napari_calf.io.files import write_text_atomic
from napari_calf.io.volumes import Volume, load_volume, save_like

CORRECTIONS_DIR = "corrections"
INDEX_NAME = "corrections.json"
#: Corrected label files as they were before a later decision replaced them (for undo).
HISTORY_DIR = ".history"
#: What a reviewer can decide about an issue.
DECISIONS: tuple[str, ...] = ("label-right", "use-suggestion", "edited")


def safe_case_id(case_id: str) -> str:
    """A case id used as a folder name: refuse anything that could leave ``corrections/``."""
    text = str(case_id)
    if not text or text in (".", "..") or any(sep in text for sep in ("/", "\\", os.sep, "\0")):
        raise CalfInputError(None, f"case id {case_id!r} cannot name a folder.",
                             "use case ids without slashes (as napari-calf's discovery gives them).")
    return text


def _on_disk_dtype(path: Path) -> np.dtype:
    import nibabel as nib

    try:
        return np.dtype(nib.load(str(path)).header.get_data_dtype())
    except Exception as exc:  # nibabel's header errors share no base class
        raise CalfInputError(path, f"could not be read as NIfTI ({type(exc).__name__}: {exc}).",
                             "check that the original label file is still there and readable.") from exc


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` through a temporary file in ``target``'s folder."""
    import shutil

    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


class CorrectionStore:
    """The corrections of one audit folder.

    Parameters
    ----------
    audit_dir : the audit folder (``corrections/`` is created inside it on the first write).
    """

    def __init__(self, audit_dir: str | Path) -> None:
        self.audit_dir = Path(audit_dir).expanduser().resolve()
        self.folder = self.audit_dir / CORRECTIONS_DIR
        self.index_path = self.folder / INDEX_NAME

    # ------------------------------------------------------------------ reading

    def decisions(self) -> list[dict[str, Any]]:
        """Every recorded decision, oldest first (empty before the first one).

        Raises
        ------
        CalfInputError
            ``corrections.json`` exists but is not a version-1 corrections file.
        """
        return self._read_index()[0]

    def _read_index(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(decisions, history)`` of ``corrections.json`` (both empty before the first
        decision; no history in files written before undo existed)."""
        if not self.index_path.is_file():
            return [], []
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalfInputError(self.index_path, f"could not be read as JSON ({exc}).",
                                 "restore it from a backup, or move it away to start the review "
                                 "afresh (the corrected label files stay valid).") from exc
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(
                data.get("decisions"), list):
            raise CalfInputError(self.index_path, "is not a version-1 corrections file.",
                                 "move it away; napari-calf writes a new one on the next decision.")
        history = data.get("history")
        return ([dict(d) for d in data["decisions"] if isinstance(d, dict)],
                [dict(h) for h in history if isinstance(h, dict)] if isinstance(history, list) else [])

    def reviewed_ids(self) -> set[str]:
        """Ids of the issues that carry a decision."""
        return {str(d.get("issue_id")) for d in self.decisions()}

    def target_path(self, case_id: str, label_file: str | Path) -> Path:
        """Where the corrected label of ``case_id`` goes: ``corrections/<case_id>/<file name>``."""
        return self.folder / safe_case_id(case_id) / Path(label_file).name

    def corrected_label_path(self, case_id: str) -> Path | None:
        """The corrected label file of ``case_id``, or None when the case has none yet."""
        folder = self.folder / safe_case_id(case_id)
        if not folder.is_dir():
            return None
        found = sorted(p for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith((".nii", ".nii.gz")))
        return found[0] if found else None

    def current_label(self, case_id: str, label_file: str | Path) -> tuple[Volume, Volume]:
        """``(original, current)``: the original label and the label as corrected so far
        (the original again when nothing is corrected), both canonical.

        Raises
        ------
        CalfInputError
            A file is unreadable, or the corrected file is not on the original's grid.
        """
        original = load_volume(label_file, label=True)
        corrected = self.corrected_label_path(case_id)
        if corrected is None:
            return original, original
        current = load_volume(corrected, label=True)
        if current.data.shape != original.data.shape or not np.allclose(
                current.affine, original.affine, atol=1e-3):
            raise CalfInputError(corrected, f"is not on the grid of {label_file} (shape "
                                 f"{current.data.shape} vs {original.data.shape}).",
                                 "move the corrected file away; it does not belong to this label.")
        return original, current

    # ------------------------------------------------------------------ writing

    def record(self, issue_id: str, case_id: str, decision: str, *, label_file: str | Path,
               corrected: np.ndarray | None = None, new_label_value: int | None = None,
               reference: Volume | None = None) -> dict[str, Any]:
        """Record a decision; with ``corrected``, write the corrected label map first.

        Parameters
        ----------
        issue_id, case_id : the issue decided on and its case.
        decision : one of :data:`DECISIONS`.
        label_file : the ORIGINAL label file of the case (never written).
        corrected : integer array shaped like the original's canonical data: the label as it
            should be. Written to ``corrections/<case_id>/<label file name>`` in the
            original's orientation, affine and on-disk dtype when it differs from the
            current label; ``None`` records the decision alone.
        new_label_value : the label value new tumour was given, if any.
        reference : the original label :class:`Volume`, if already loaded.

        Returns
        -------
        dict
            The decision as stored: ``voxels_changed`` counts the voxels that differ from the
            label before this decision; ``corrected_file`` (relative to the audit folder)
            names the corrected label this decision leaves the case with, None if the case
            still uses its original label.

        Raises
        ------
        CalfInputError
            Unknown decision, a corrected array of the wrong shape or kind, an unreadable
            label, or a target that would be the original file.
        """
        if decision not in DECISIONS:
            raise CalfInputError(None, f"decision '{decision}' is not one of {', '.join(DECISIONS)}.",
                                 "record label-right, use-suggestion or edited.")
        label_file = Path(label_file)
        target = self.target_path(case_id, label_file)
        changed = 0
        if corrected is not None:
            if _same_file(target, label_file) or target.resolve() == label_file.resolve():
                raise CalfInputError(target, "is the original label file; corrections never "
                                     "overwrite it.", "keep the audit folder apart from the data.")
            original, current = self.current_label(case_id, label_file)
            if reference is not None and reference.data.shape == original.data.shape:
                original = reference
            corrected = np.asarray(corrected)
            if corrected.shape != original.data.shape or corrected.dtype.kind not in "iub":
                raise CalfInputError(label_file, f"a corrected label of shape {corrected.shape} and "
                                     f"dtype {corrected.dtype} does not fit this label "
                                     f"({original.data.shape}, integer).",
                                     "pass an integer array on the label's canonical grid.")
            changed = int(np.count_nonzero(corrected != current.data))
        decisions, history = self._read_index()
        step: dict[str, Any] = {"issue_id": str(issue_id), "wrote": None, "previous": None,
                                "kept_as": None, "replaced": None}
        if changed:
            before = self.corrected_label_path(case_id)
            if before is not None:  # kept, so that undo can put it back
                kept_as = self.folder / HISTORY_DIR / f"{len(history) + 1:05d}-{before.name}"
                kept_as.parent.mkdir(parents=True, exist_ok=True)
                _copy_atomic(before, kept_as)
                step["previous"] = self._relative(before)
                step["kept_as"] = self._relative(kept_as)
            target.parent.mkdir(parents=True, exist_ok=True)
            stored = corrected.astype(_on_disk_dtype(label_file), copy=False)
            save_like(stored, original, target, overwrite=True)
            step["wrote"] = self._relative(target)
        existing = self.corrected_label_path(case_id)
        entry = {
            "issue_id": str(issue_id), "case_id": str(case_id), "decision": decision,
            "voxels_changed": changed, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "label_file": str(label_file.resolve()),
            "corrected_file": None if existing is None else existing.relative_to(self.audit_dir).as_posix(),
            "new_label_value": None if new_label_value is None else int(new_label_value),
        }
        step["replaced"] = next((d for d in decisions if d.get("issue_id") == entry["issue_id"]), None)
        kept = [d for d in decisions if d.get("issue_id") != entry["issue_id"]]
        self._write_index([*kept, entry], [*history, step])
        return entry

    # ------------------------------------------------------------------ undo

    def can_undo(self) -> bool:
        """Whether a decision recorded here can be taken back (see :meth:`undo_last`)."""
        return bool(self._read_index()[1])

    def undo_last(self) -> dict[str, Any] | None:
        """Take back the latest decision: its corrected label file is put back as it was
        before it (removed, when the case had none), and the decision it replaced for the
        same issue, if any, is restored. Returns the decision taken back, or None when
        there is none to undo (decisions recorded before undo existed cannot be).
        """
        decisions, history = self._read_index()
        if not history:
            return None
        step = history[-1]
        undone = next((d for d in decisions if d.get("issue_id") == step.get("issue_id")), None)
        wrote = self.audit_dir / step["wrote"] if step.get("wrote") else None
        if wrote is not None:
            if step.get("kept_as"):
                kept_as = self.audit_dir / step["kept_as"]
                previous = self.audit_dir / step["previous"]
                _copy_atomic(kept_as, previous)
                if wrote != previous:
                    wrote.unlink(missing_ok=True)
            else:
                wrote.unlink(missing_ok=True)  # the case is back on its original label
        rest = [d for d in decisions if d.get("issue_id") != step.get("issue_id")]
        if step.get("replaced"):
            rest.append(step["replaced"])
        self._write_index(rest, history[:-1])
        if step.get("kept_as"):
            (self.audit_dir / step["kept_as"]).unlink(missing_ok=True)
        return undone

    def _write_index(self, decisions: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": 1, "audit": "..", "decisions": decisions, "history": history},
                          indent=2)
        write_text_atomic(self.index_path, text + "\n")

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.audit_dir).as_posix()
