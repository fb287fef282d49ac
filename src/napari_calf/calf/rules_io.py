"""Reading, writing and printing selection rule tables (see :mod:`napari_calf.calf.rules`).

Import the public names from :mod:`napari_calf.calf.stats`. A malformed table is
refused with a :class:`~napari_calf.errors.CalfConfigError` that names the row
and the problem; files are written atomically and never replaced unless asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import CalfConfigError, CalfInputError
from ..io.files import write_text_atomic
from .rules import DEFAULT_RULES, Rule

#: Version of the JSON layout written by :func:`rules_to_json`.
RULES_FORMAT_VERSION = 1


def validate_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """Return ``rules`` as a tuple, refusing an empty table or rows that are not :class:`Rule`."""
    table = tuple(rules)
    if not table:
        raise CalfConfigError(
            "the rule table is empty. Fix: give at least one row; end with an 'otherwise' "
            "row (no bounds) so every dataset gets a transform."
        )
    for i, rule in enumerate(table):
        if not isinstance(rule, Rule):
            raise CalfConfigError(f"rule table row {i + 1} is a {type(rule).__name__}, not a Rule.")
    return table


def rules_to_json(rules: Iterable[Rule]) -> str:
    """The table as indented JSON: ``{"format": "napari-calf rules", "version": 1, "rules": [...]}``."""
    table = validate_rules(rules)
    doc = {
        "format": "napari-calf rules",
        "version": RULES_FORMAT_VERSION,
        "rules": [rule.to_dict() for rule in table],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def rules_from_json(text: str, *, source: str | Path | None = None) -> tuple[Rule, ...]:
    """Parse a table written by :func:`rules_to_json` (or a bare JSON list of rows).

    Parameters
    ----------
    text : str
        The JSON text.
    source : path, optional
        Only named in error messages (the file the text came from).

    Raises
    ------
    CalfConfigError
        Invalid JSON, an empty table, or a row with an unknown transform, unknown
        key, wrong type or impossible range; the message names the row.
    """
    where = f"{source}: " if source is not None else ""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CalfConfigError(
            f"{where}not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Fix: correct the file, or write a fresh one with save_rules()."
        ) from None
    if isinstance(doc, Mapping):
        extra = sorted(set(doc) - {"format", "version", "rules"})
        if extra:
            raise CalfConfigError(
                f"{where}unknown top-level key(s) {', '.join(map(repr, extra))}. "
                "Fix: keep only 'format', 'version' and 'rules'."
            )
        if doc.get("version", RULES_FORMAT_VERSION) != RULES_FORMAT_VERSION:
            raise CalfConfigError(
                f"{where}rule table version {doc.get('version')!r} is not supported "
                f"(this napari-calf reads version {RULES_FORMAT_VERSION})."
            )
        if "rules" not in doc:
            raise CalfConfigError(f"{where}no 'rules' list. Fix: add \"rules\": [ ... ].")
        rows = doc["rules"]
    else:
        rows = doc
    if not isinstance(rows, list):
        raise CalfConfigError(
            f"{where}'rules' must be a JSON list of rows, got {type(rows).__name__}."
        )
    if not rows:
        raise CalfConfigError(
            f"{where}the rule table is empty. Fix: give at least one row; end with an "
            "'otherwise' row (only transform and source) so every dataset gets a transform."
        )
    table = []
    for i, row in enumerate(rows):
        try:
            table.append(Rule.from_dict(row))
        except CalfConfigError as exc:
            raise CalfConfigError(f"{where}rule table row {i + 1}: {exc}") from None
        except TypeError as exc:  # pragma: no cover - from_dict checks keys first
            raise CalfConfigError(f"{where}rule table row {i + 1}: {exc}") from None
    return tuple(table)


def save_rules(rules: Iterable[Rule], path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the table as JSON, atomically; refuse to replace a file unless ``overwrite``.

    Raises
    ------
    CalfFileExistsError
        ``path`` exists and ``overwrite`` is false.
    CalfInputError
        The folder does not exist.
    """
    path = Path(path)
    text = rules_to_json(rules)
    write_text_atomic(path, text, overwrite=overwrite)
    return path


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """Read a table saved by :func:`save_rules` (see :func:`rules_from_json` for errors)."""
    path = Path(path)
    if not path.is_file():
        raise CalfInputError(
            path, "the rule table file does not exist.",
            "check the path, or write the defaults with save_rules(DEFAULT_RULES, path).",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CalfConfigError(f"{path}: not a UTF-8 text file. Fix: save it as UTF-8 JSON.") from None
    return rules_from_json(text, source=path)


def format_rules(rules: Iterable[Rule] = DEFAULT_RULES) -> str:
    """The table as aligned text for the CLI: row number, condition, transform, source, note."""
    table = tuple(rules)
    header = ("#", "condition", "transform", "source", "note")
    rows = [
        (str(i + 1), rule.describe(), rule.transform, rule.source, rule.note)
        for i, rule in enumerate(table)
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [r[0].rjust(widths[0])] + [r[c].ljust(widths[c]) for c in range(1, len(r))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
