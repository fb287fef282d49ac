"""The vocabulary of injected annotation errors: the spec string and the records.

See :mod:`napari_calf.phantom.label_errors` for what each kind does to a label map.
This module only parses, validates and prints ``kind=F[:Kmm],...`` specs and defines
:class:`InjectedError`, the record an audit is scored against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..errors import CalfConfigError

LABEL_ERROR_KINDS: tuple[str, ...] = (
    "missed", "erased-slices", "dilate", "erode", "spurious", "systematic-dilate")

SPEC_EXAMPLE = ("missed=0.15,erased-slices=0.05,dilate=0.1:2mm,erode=0.1:2mm,"
                "spurious=0.05,systematic-dilate=1mm")

_FRACTIONS = ("missed", "erased_slices", "dilate", "erode", "spurious")


# --------------------------------------------------------------------------- spec


def _spec_error(part: str, problem: str, fix: str) -> CalfConfigError:
    return CalfConfigError(
        f"Label errors: {part!r} {problem}. Fix: {fix}; the valid form is "
        f"kind=fraction[:Kmm] separated by commas, e.g. {SPEC_EXAMPLE!r}, or 'none'.")


def _fmt(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class LabelErrorSpec:
    """Which annotation errors to inject: fractions in [0, 1], magnitudes in mm (>= 0).

    ``dilate``/``erode`` with a fraction above 0 need a magnitude above 0.

    Raises
    ------
    CalfConfigError
        A fraction outside [0, 1], a negative or non-finite magnitude, or a missing one.
    """

    missed: float = 0.0
    erased_slices: float = 0.0
    dilate: float = 0.0
    dilate_mm: float = 0.0
    erode: float = 0.0
    erode_mm: float = 0.0
    spurious: float = 0.0
    systematic_dilate_mm: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = f.name.removesuffix("_mm").replace("_", "-")
            ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating,
                                                                    np.integer))
            if not ok or not math.isfinite(value) or value < 0 or (
                    f.name in _FRACTIONS and value > 1):
                what = "a fraction from 0 to 1" if f.name in _FRACTIONS else "a distance >= 0 mm"
                raise CalfConfigError(f"Label errors: {f.name}={value!r} is not {what}. "
                                      f"Fix: give {what} for {kind}, e.g. {SPEC_EXAMPLE!r}.")
            object.__setattr__(self, f.name, float(value))
        for kind in ("dilate", "erode"):
            if getattr(self, kind) > 0 and getattr(self, f"{kind}_mm") <= 0:
                raise CalfConfigError(
                    f"Label errors: {kind} needs a distance: {kind}_mm is 0 while "
                    f"{kind}={getattr(self, kind)}. Fix: give e.g. '{kind}=0.1:2mm'.")

    def describe(self) -> str:
        """The canonical spec string (kinds that are off are left out; all off: ``none``)."""
        parts = []
        for kind in LABEL_ERROR_KINDS:
            key = kind.replace("-", "_")
            if kind == "systematic-dilate":
                if self.systematic_dilate_mm:
                    parts.append(f"{kind}={_fmt(self.systematic_dilate_mm)}mm")
            elif kind in ("dilate", "erode"):
                frac, mm = getattr(self, key), getattr(self, f"{key}_mm")
                if frac or mm:
                    parts.append(f"{kind}={_fmt(frac)}:{_fmt(mm)}mm")
            elif getattr(self, key):
                parts.append(f"{kind}={_fmt(getattr(self, key))}")
        return ",".join(parts) or "none"


def _parse_fraction(part: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _spec_error(part, f"has {text!r} where a fraction belongs",
                          "give a number from 0 to 1") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise _spec_error(part, f"has fraction {text} outside 0 to 1",
                          "give a number from 0 to 1 (0.1 = 10 % of cases)")
    return value


def _parse_mm(part: str, text: str) -> float:
    number = text[:-2].strip() if text.lower().endswith("mm") else None
    if not number:
        raise _spec_error(part, f"has magnitude {text!r} without the unit mm",
                          "give distances in millimetres, e.g. 2mm")
    try:
        value = float(number)
    except ValueError:
        raise _spec_error(part, f"has magnitude {text!r}, not a number of mm",
                          "give distances in millimetres, e.g. 2mm") from None
    if not math.isfinite(value) or value < 0:
        raise _spec_error(part, f"has magnitude {text!r}, which is negative or not finite",
                          "give a distance >= 0 in millimetres, e.g. 2mm")
    return value


def parse_label_error_spec(text: str) -> LabelErrorSpec:
    """Parse ``kind=F[:Kmm],...`` (see the module docstring) into a :class:`LabelErrorSpec`.

    ``none`` means no errors. ``parse_label_error_spec(spec.describe()) == spec``.

    Raises
    ------
    CalfConfigError
        Naming the bad part: an unknown or repeated kind, a missing value, a fraction
        outside [0, 1], a missing, negative or non-mm magnitude.
    """
    if not isinstance(text, str) or not text.strip():
        raise _spec_error(str(text), "is empty", "name at least one kind")
    if text.strip().lower() == "none":
        return LabelErrorSpec()
    values: dict[str, float] = {}
    for raw in text.split(","):
        part = raw.strip()
        kind, sep, value = (s.strip() for s in part.partition("="))
        if kind not in LABEL_ERROR_KINDS:
            raise _spec_error(part, f"names an unknown kind {kind!r}",
                              f"use one of {', '.join(LABEL_ERROR_KINDS)}")
        key = kind.replace("-", "_")
        if key in values or f"{key}_mm" in values:
            raise _spec_error(part, f"repeats {kind}", "give each kind once")
        if not sep or not value:
            raise _spec_error(part, "has no value", f"write e.g. {kind}=0.1")
        frac_text, colon, mm_text = (s.strip() for s in value.partition(":"))
        if kind == "systematic-dilate":
            if colon:
                raise _spec_error(part, "has a fraction, but applies to every case",
                                  "give only a distance, e.g. systematic-dilate=1mm")
            values["systematic_dilate_mm"] = _parse_mm(part, value)
        elif kind in ("dilate", "erode"):
            values[key] = _parse_fraction(part, frac_text)
            if colon:
                values[f"{key}_mm"] = _parse_mm(part, mm_text)
            if values[key] > 0 and not values.get(f"{key}_mm"):
                raise _spec_error(part, "has no distance above 0",
                                  f"write it as {kind}={frac_text}:2mm (fraction:distance)")
        else:
            if colon:
                raise _spec_error(part, "has a distance, but takes a fraction only",
                                  f"write e.g. {kind}={frac_text}")
            values[key] = _parse_fraction(part, value)
    return LabelErrorSpec(**values)



# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class InjectedError:
    """One injected error, for matching an audit's findings.

    Attributes
    ----------
    slices : tuple of int
        First and last axial (z, axis 2) slice changed, inclusive.
    component : int or None
        The lesion in :func:`lesion_components` numbering of the truth (1 = largest);
        None for ``spurious`` and ``systematic-dilate``.
    voxels, volume_mm3 : int, float
        Voxels changed by this error (added or removed) and their volume.
    magnitude_mm : float or None
        K of ``dilate``, ``erode``, ``systematic-dilate``; None otherwise.
    centre_vox : tuple of int
        Rounded centroid (x, y, z) of the changed voxels.
    """

    case_id: str
    kind: str
    slices: tuple[int, int]
    component: int | None
    voxels: int
    volume_mm3: float
    magnitude_mm: float | None
    centre_vox: tuple[int, int, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples as lists)."""
        return {"case_id": self.case_id, "kind": self.kind, "slices": list(self.slices),
                "component": self.component, "voxels": self.voxels,
                "volume_mm3": self.volume_mm3, "magnitude_mm": self.magnitude_mm,
                "centre_vox": list(self.centre_vox)}
