"""Files: NIfTI volumes, dataset discovery, atomic outputs. No torch.

Depends on the ground only (``errors``, ``events``, ``config``). What may change here without
touching other parts: file formats, layouts recognised, checks on bad files.
"""

from __future__ import annotations

from .._lazy import lazy_face

_EXPORTS = {
    "Volume": "volumes", "load_volume": "volumes", "save_volume": "volumes",
    "save_like": "volumes", "to_source_orientation": "volumes", "label_dtype_for": "volumes",
    "check_same_grid": "volumes",
    "MODALITIES_2021": "volumes", "MODALITIES_2023": "volumes",
    "Case": "discovery", "LoadedCase": "discovery", "LAYOUTS": "discovery",
    "discover_cases": "discovery", "load_case": "discovery",
    "atomic_path": "files", "write_text_atomic": "files",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
