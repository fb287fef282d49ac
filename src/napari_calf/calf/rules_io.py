"""Reading, writing and printing selection rule tables (see :mod:`napari_calf.calf.rules`).

Import the public names from :mod:`napari_calf.calf.stats`. A malformed table is
refused with a :class:`~napari_calf.errors.CalfConfigError` that names the row
and the problem; files are written atomically and never replaced unless asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import CalfConfigError, CalfInputError
from ..io.files import write_text_atomic
from .rules import DEFAULT_RULES, Rule

#: Version of the JSON layout written by :func:`rules_to_json`.
RULES_FORMAT_VERSION = 1
#: Nesting depth reported when a table nests deeper than Python's JSON reader can follow.
_REPORTED_DEPTH = 64


class _HugeInteger:
    """A JSON integer no float can hold (kept as a marker so the row and field can be named:
    ``int()`` of 4301+ digits raises, and ``float()`` of 310+ digits overflows)."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))

    def __repr__(self) -> str:
        return f"<a {self.digits}-digit integer>"


def _parse_int(text: str) -> int | _HugeInteger:
    if len(text.lstrip("-")) > 309:
        return _HugeInteger(text)
    value = int(text)
    try:
        float(value)
    except OverflowError:
        return _HugeInteger(text)
    return value


def _nesting_site(text: str, limit: int) -> tuple[list[Any], int] | None:
    """JSON path (keys and indices) and character offset where nesting first exceeds
    ``limit`` levels; found without recursion, so it works where ``json.loads`` gave up."""
    stack: list[list[Any]] = []
    expect_key = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if stack and stack[-1][0] == "{" and expect_key:
                try:
                    stack[-1][1] = json.loads(text[i:j + 1])
                except ValueError:
                    stack[-1][1] = text[i + 1:j]
            i = j + 1
            continue
        if c in "{[":
            if len(stack) >= limit:
                return [entry[1] for entry in stack], i
            stack.append([c, None if c == "{" else 0])
            expect_key = c == "{"
        elif c in "}]":
            if stack:
                stack.pop()
            expect_key = False
        elif c == ":":
            expect_key = False
        elif c == "," and stack:
            if stack[-1][0] == "[":
                stack[-1][1] += 1
            else:
                expect_key = True
        i += 1
    return None


def _describe_site(path: Sequence[Any]) -> str:
    """``rules[1].s_min`` -> ``row 2, field 's_min'`` (the way errors name table cells)."""
    rows = list(path[1:]) if path and path[0] == "rules" else list(path)
    if rows and isinstance(rows[0], int):
        field = f", field {rows[1]!r}" if len(rows) > 1 and isinstance(rows[1], str) else ""
        return f"rule table row {rows[0] + 1}{field}"
    return "the table" if not path else f"at {'.'.join(map(str, path))}"


def _too_deep(text: str, where: str) -> CalfConfigError:
    site = _nesting_site(text, _REPORTED_DEPTH)
    if site is None:  # pragma: no cover - json gave up, so the depth is there
        return CalfConfigError(f"{where}nested too deeply to read. Fix: a rule table is a "
                               "list of flat rows; write each bound as a plain number.")
    path, offset = site
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return CalfConfigError(
        f"{where}{_describe_site(path)}: nested more than {_REPORTED_DEPTH} levels deep "
        f"(line {line}, column {column}), deeper than a JSON reader can follow. Fix: a rule "
        "table is a list of flat rows; write each bound as a plain number, e.g. \"s_min\": 0.5."
    )


def _check_numbers(row: Any, index: int, where: str) -> None:
    if not isinstance(row, Mapping):
        return
    for key, value in row.items():
        if isinstance(value, _HugeInteger):
            raise CalfConfigError(
                f"{where}rule table row {index + 1}, field {key!r}: a {value.digits}-digit "
                "integer, far beyond any bound on S or K (a float ends near 1.8e308). "
                "Fix: write a plain number such as 0.5 or 3."
            )


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
        key, wrong type, impossible range, a number no float holds or nesting deeper than
        a JSON reader follows; the message names the row and field.
    """
    where = f"{source}: " if source is not None else ""
    try:
        doc = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise CalfConfigError(
            f"{where}not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Fix: correct the file, or write a fresh one with save_rules()."
        ) from None
    except RecursionError:
        raise _too_deep(text, where) from None
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
        _check_numbers(row, i, where)
        try:
            table.append(Rule.from_dict(row))
        except CalfConfigError as exc:
            raise CalfConfigError(f"{where}rule table row {i + 1}: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:  # pragma: no cover - checked above
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
