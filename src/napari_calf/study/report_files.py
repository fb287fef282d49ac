"""Which files in a study folder are the study's own, so that a report never replaces a
user's file.

- A folder is a study when it holds ``study.json`` (or, made through the library, a
  ``runs/`` folder of run folders named ``<arch>__<loss>__seed<k>``).
  :func:`check_study_folder` refuses to
  start a study in a folder that is not empty and not a study (``--out`` pointing at a
  folder of someone's files), unless asked (``--overwrite``).
- Inside a study, the report regenerates only its own outputs. It records what it wrote
  (a SHA-256 per file in ``.napari-calf-report.json``); :func:`claim_outputs` accepts an
  existing output only when it is unchanged since, and refuses (listing them) files the
  study did not write or that were edited since, unless asked. Reports written before
  that record existed are recognised by their content (first line, header, format).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from ..engine.checkpoints import LOCK_FILE, write_json_atomic
from ..errors import CalfInputError
from .compare import RUNS_DIR, STUDY_JSON, parse_run_name

__all__ = ["REPORT_RECORD", "is_study", "check_study_folder", "claim_outputs", "record_outputs"]

#: What the report wrote, as ``{relative path: sha256}``.
REPORT_RECORD = ".napari-calf-report.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded(study_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((study_dir / REPORT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _head(path: Path, n: int = 200) -> str:
    try:
        with path.open("rb") as fh:
            return fh.read(n).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _written_by_an_earlier_report(rel: str, path: Path) -> bool:
    """Recognise a report output of a napari-calf version that kept no record."""
    head = _head(path)
    if rel == "README.md":
        return head.startswith("# Loss comparison study\n")
    if rel == "summary.csv":
        return head.startswith("arch,loss,n_seeds,")
    if rel == "paired.csv":
        return head.startswith("reference,other,metric,") or head.strip() == ""
    if rel == "summary.json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(doc, dict) and {"rows", "paired", "definitions"} <= set(doc)
    if rel.startswith("plots/") and rel.endswith(".png"):
        try:
            with path.open("rb") as fh:
                return fh.read(8) == b"\x89PNG\r\n\x1a\n"
        except OSError:
            return False
    return False


def is_study(folder: Path) -> bool:
    """``study.json``, or a ``runs/`` folder holding run folders (a study run from Python)."""
    if (folder / STUDY_JSON).is_file():
        return True
    runs = folder / RUNS_DIR
    return runs.is_dir() and any(p.is_dir() and parse_run_name(p.name) is not None
                                 for p in runs.iterdir())


def check_study_folder(study_dir: str | Path, *, overwrite: bool = False) -> None:
    """Refuse to make ``study_dir`` a study when it holds other things and is not one.

    Raises
    ------
    CalfInputError
        ``study_dir`` is a file, or a non-empty folder without ``study.json`` (and not
        ``overwrite``).
    """
    study_dir = Path(study_dir)
    if study_dir.exists() and not study_dir.is_dir():
        raise CalfInputError(study_dir, "is a file, not a study folder.",
                             "give --out a new folder (or an earlier study's folder).")
    if not study_dir.is_dir() or is_study(study_dir) or overwrite:
        return
    # the lock file of a compare that stopped before writing study.json is no one's data
    entries = sorted(p.name for p in study_dir.iterdir() if p.name != LOCK_FILE)
    if entries:
        shown = ", ".join(entries[:5]) + (" …" if len(entries) > 5 else "")
        raise CalfInputError(
            study_dir,
            f"is not empty ({shown}) and is not a study (it has no {STUDY_JSON}); the "
            "study's README.md, summary.csv and other files could replace files there.",
            "give --out a new or empty folder (or an earlier study's folder), or pass "
            "--overwrite to write the study into this one anyway.",
        )


def claim_outputs(study_dir: str | Path, outputs: Iterable[str], *, overwrite: bool = False) -> None:
    """Refuse, before writing any of them, report ``outputs`` (paths relative to
    ``study_dir``) that exist and are not the study's own unchanged files.

    Raises
    ------
    CalfInputError
        Listing each such file and why (not written by this study, or changed since).
    """
    if overwrite:
        return
    study_dir = Path(study_dir)
    recorded = _recorded(study_dir)
    refused = []
    for rel in outputs:
        path = study_dir / rel
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_symlink() or not path.is_file():
            refused.append(f"{rel} (not a plain file)")
        elif rel in recorded:
            if _sha256(path) != recorded[rel]:
                refused.append(f"{rel} (changed since the study wrote it)")
        elif not _written_by_an_earlier_report(rel, path):
            refused.append(f"{rel} (not written by this study)")
    if refused:
        raise CalfInputError(
            study_dir,
            f"the report would replace {', '.join(refused)}.",
            "move those files elsewhere (or rename them), or pass --overwrite to let the "
            "report replace them.",
        )


def record_outputs(study_dir: str | Path, outputs: Iterable[str]) -> Path:
    """Record the SHA-256 of each written output (kept with earlier records)."""
    study_dir = Path(study_dir)
    files = _recorded(study_dir)
    for rel in outputs:
        path = study_dir / rel
        if path.is_file():
            files[rel] = _sha256(path)
    return write_json_atomic(study_dir / REPORT_RECORD,
                             {"about": "files napari-calf's study report wrote; it replaces "
                                       "only these, and only while unchanged",
                              "files": files})
