"""The CALF selection rule table (CALF_METHOD §3) as plain, editable data.

A :class:`Rule` is one row: optional bounds on the skewness S, on |S|, on the
excess kurtosis K and on |K| (each bound strict or not), the transform it selects,
where the row comes from (``"paper"``, ``"assumption"``, ``"fallback"``) and a
short plain-language note. A row without bounds matches everything
("otherwise"). :func:`select_transform` walks a table top to bottom and the first
matching row wins.

Tables round-trip through JSON (see :mod:`napari_calf.calf.rules_io`) so that users
can see and edit the thresholds.

Public names are re-exported by :mod:`napari_calf.calf.stats`; import them from there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import CalfConfigError

if TYPE_CHECKING:  # only for type hints: stats.py imports this module
    from .stats import ImbalanceStats

#: Transforms a rule may select (CALF_METHOD §3); ``bce-dice`` is the plain baseline.
RULE_TRANSFORMS: tuple[str, ...] = ("fisher", "logit", "arcsine", "log10", "ln", "bce-dice")
#: Where a row comes from: the paper, our assumption, or the catch-all fallback.
RULE_SOURCES: tuple[str, ...] = ("paper", "assumption", "fallback")

# (bound field, inclusive-flag field, quantity symbol, kind) for every bound a rule can hold.
RULE_BOUNDS: tuple[tuple[str, str, str, str], ...] = (
    ("s_min", "s_min_inclusive", "S", "min"),
    ("s_max", "s_max_inclusive", "S", "max"),
    ("abs_s_min", "abs_s_min_inclusive", "|S|", "min"),
    ("abs_s_max", "abs_s_max_inclusive", "|S|", "max"),
    ("k_min", "k_min_inclusive", "K", "min"),
    ("k_max", "k_max_inclusive", "K", "max"),
    ("abs_k_min", "abs_k_min_inclusive", "|K|", "min"),
    ("abs_k_max", "abs_k_max_inclusive", "|K|", "max"),
)
# Quantities in the order a condition is written: S-bounds before K-bounds.
_QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("S", "s_min", "s_max"),
    ("|S|", "abs_s_min", "abs_s_max"),
    ("K", "k_min", "k_max"),
    ("|K|", "abs_k_min", "abs_k_max"),
)


def _fmt_threshold(value: float) -> str:
    """A threshold as people write it: ``-1.0`` -> ``−1``, ``0.5`` -> ``0.5``."""
    return f"{value:g}".replace("-", "\u2212")


def _fmt_value(value: float, *thresholds: float) -> str:
    """A statistic with 2 decimals, or more where rounding would make it equal a threshold.

    Why: "S = 1.00 < 1" reads as a contradiction when S is 0.998; printing 0.998
    keeps the reason truthful next to the threshold it was compared with.
    """
    for digits in range(2, 7):
        text = f"{value:.{digits}f}"
        if not any(float(text) == t and value != t for t in thresholds):
            break
    return text.replace("-", "\u2212")


@dataclass(frozen=True)
class Rule:
    """One row of the selection table: bounds on S, |S|, K, |K| and the transform they select.

    Every bound is optional (``None`` = no bound). ``*_inclusive`` says whether
    the bound itself satisfies the condition (``≤``/``≥``) or not (``<``/``>``).
    A row matches when every bound it sets holds; a row that sets none matches
    everything ("otherwise").

    Examples
    --------
    Row 2 of the default table, ``−1 < S ≤ −0.5``::

        Rule("logit", s_min=-1, s_min_inclusive=False, s_max=-0.5)

    Raises
    ------
    CalfConfigError
        Unknown transform or source, a bound that is not a finite number, a
        negative bound on |S| or |K|, or a range that no value can satisfy
        (min > max, or min == max with a strict side).
    """

    transform: str
    source: str = "assumption"
    note: str = ""
    s_min: float | None = None
    s_min_inclusive: bool = True
    s_max: float | None = None
    s_max_inclusive: bool = True
    abs_s_min: float | None = None
    abs_s_min_inclusive: bool = True
    abs_s_max: float | None = None
    abs_s_max_inclusive: bool = True
    k_min: float | None = None
    k_min_inclusive: bool = True
    k_max: float | None = None
    k_max_inclusive: bool = True
    abs_k_min: float | None = None
    abs_k_min_inclusive: bool = True
    abs_k_max: float | None = None
    abs_k_max_inclusive: bool = True

    def __post_init__(self) -> None:
        if self.transform not in RULE_TRANSFORMS:
            raise CalfConfigError(
                f"unknown transform {self.transform!r}. "
                f"Fix: use one of {', '.join(RULE_TRANSFORMS)}."
            )
        if self.source not in RULE_SOURCES:
            raise CalfConfigError(
                f"unknown source {self.source!r}. Fix: use one of {', '.join(RULE_SOURCES)}."
            )
        if not isinstance(self.note, str):
            raise CalfConfigError(f"note must be text, got {type(self.note).__name__}.")
        for bound, flag, symbol, _kind in RULE_BOUNDS:
            value = getattr(self, bound)
            if value is not None:
                # bool is an int subclass; True as a threshold is always a typo.
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise CalfConfigError(
                        f"{bound} must be a number or null, got {value!r}. "
                        f"Fix: write a number such as 0.5."
                    )
                if not math.isfinite(value):
                    raise CalfConfigError(f"{bound} must be finite, got {value!r}.")
                if symbol.startswith("|") and value < 0:
                    raise CalfConfigError(
                        f"{bound} = {value:g} is negative, but {symbol} is never negative. "
                        "Fix: use a bound >= 0 or a bound on the signed value."
                    )
                object.__setattr__(self, bound, float(value))
            if not isinstance(getattr(self, flag), bool):
                raise CalfConfigError(
                    f"{flag} must be true or false, got {getattr(self, flag)!r}."
                )
        for symbol, lo_name, hi_name in _QUANTITIES:
            lo, hi = getattr(self, lo_name), getattr(self, hi_name)
            if lo is None or hi is None:
                continue
            strict = not (
                getattr(self, f"{lo_name}_inclusive") and getattr(self, f"{hi_name}_inclusive")
            )
            if lo > hi or (lo == hi and strict):
                raise CalfConfigError(
                    f"{lo_name} = {lo:g} and {hi_name} = {hi:g} leave no value of {symbol} "
                    f"that matches. Fix: make {lo_name} smaller than {hi_name}."
                )

    # -- matching ---------------------------------------------------------------------
    def _values(self, skewness: float, kurtosis: float) -> dict[str, float]:
        return {"S": skewness, "|S|": abs(skewness), "K": kurtosis, "|K|": abs(kurtosis)}

    def matches(self, skewness: float, kurtosis: float) -> bool:
        """Whether S = ``skewness`` and K = ``kurtosis`` satisfy every bound of this row."""
        values = self._values(skewness, kurtosis)
        for bound, flag, symbol, kind in RULE_BOUNDS:
            limit = getattr(self, bound)
            if limit is None:
                continue
            value = values[symbol]
            inclusive = getattr(self, flag)
            if kind == "min":
                ok = value >= limit if inclusive else value > limit
            else:
                ok = value <= limit if inclusive else value < limit
            if not ok:
                return False
        return True

    @property
    def is_catch_all(self) -> bool:
        """True for a row without bounds ("otherwise")."""
        return all(getattr(self, bound) is None for bound, *_ in RULE_BOUNDS)

    def _parts(self, values: Mapping[str, float] | None) -> list[str]:
        """One clause per bounded quantity, e.g. ``−1 < S ≤ −0.5``, optionally with numbers."""
        parts = []
        for symbol, lo_name, hi_name in _QUANTITIES:
            lo, hi = getattr(self, lo_name), getattr(self, hi_name)
            if lo is None and hi is None:
                continue
            if values is None:
                middle = symbol
            else:
                limits = [t for t in (lo, hi) if t is not None]
                middle = f"{symbol} = {_fmt_value(values[symbol], *limits)}"
            lo_op = "\u2264" if getattr(self, f"{lo_name}_inclusive") else "<"
            hi_op = "\u2264" if getattr(self, f"{hi_name}_inclusive") else "<"
            if lo is not None and hi is not None:
                parts.append(f"{_fmt_threshold(lo)} {lo_op} {middle} {hi_op} {_fmt_threshold(hi)}")
            elif lo is not None:
                ge = "\u2265" if lo_op == "\u2264" else ">"
                parts.append(f"{middle} {ge} {_fmt_threshold(lo)}")
            else:
                parts.append(f"{middle} {hi_op} {_fmt_threshold(hi)}")
        return parts

    def describe(self) -> str:
        """The condition in words, e.g. ``"S ≥ 1 and K ≥ 3"``; ``"otherwise"`` without bounds."""
        parts = self._parts(None)
        return " and ".join(parts) if parts else "otherwise"

    def explain(self, skewness: float, kurtosis: float) -> str:
        """The condition with the numbers filled in, e.g. ``"S = 2.41 ≥ 1 and K = 4.21 ≥ 3"``."""
        parts = self._parts(self._values(skewness, kurtosis))
        return " and ".join(parts) if parts else "otherwise"

    # -- plain data -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: transform, source, note and every bound that is set (with its flag)."""
        out: dict[str, Any] = {"transform": self.transform, "source": self.source}
        if self.note:
            out["note"] = self.note
        for bound, flag, *_ in RULE_BOUNDS:
            value = getattr(self, bound)
            if value is not None:
                out[bound] = value
                out[flag] = getattr(self, flag)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """Build a rule from :meth:`to_dict` output; unknown keys are refused.

        Raises
        ------
        CalfConfigError
            Not a mapping, an unknown or missing key, or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise CalfConfigError(
                f"a rule must be a JSON object, got {type(data).__name__}. "
                'Fix: write each row as {"transform": "...", "s_min": ...}.'
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CalfConfigError(
                f"unknown key(s) {', '.join(map(repr, unknown))}. "
                f"Fix: use only {', '.join(sorted(known))}."
            )
        if "transform" not in data:
            raise CalfConfigError(
                f"missing key 'transform'. Fix: add one of {', '.join(RULE_TRANSFORMS)}."
            )
        for key in ("transform", "source", "note"):
            if key in data and not isinstance(data[key], str):
                raise CalfConfigError(
                    f"{key} must be text, got {data[key]!r} ({type(data[key]).__name__})."
                )
        return cls(**dict(data))


#: The default table, CALF_METHOD §3. Only row 1 is from the paper; the rest are ours.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("fisher", "paper", "strongly left-skewed sizes", s_max=-1.0),
    Rule(
        "logit", "assumption", "moderately left-skewed sizes",
        s_min=-1.0, s_min_inclusive=False, s_max=-0.5,
    ),
    Rule(
        "bce-dice", "assumption", "close to normal sizes",
        abs_s_max=0.5, abs_s_max_inclusive=False, abs_k_max=1.0, abs_k_max_inclusive=False,
    ),
    Rule(
        "arcsine", "assumption", "moderately right-skewed sizes",
        s_min=0.5, s_max=1.0, s_max_inclusive=False,
    ),
    Rule("log10", "assumption", "strongly right-skewed, heavy-tailed sizes", s_min=1.0, k_min=3.0),
    Rule("ln", "assumption", "strongly right-skewed sizes", s_min=1.0),
    Rule("bce-dice", "fallback", "a shape no other row covers"),
)


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select_transform`.

    Attributes
    ----------
    transform : str
        One of :data:`RULE_TRANSFORMS`.
    rule_index : int | None
        0-based index of the matched row in the table (``row`` is the 1-based number
        users see); ``None`` when no row was used (undefined statistics, or no row
        matched).
    rule : Rule | None
        The matched row.
    reason : str
        One line with the numbers, e.g. ``"S = 2.41 ≥ 1 and K = 4.21 ≥ 3: strongly
        right-skewed, heavy-tailed sizes → log10"``.
    stats : ImbalanceStats
        The statistics the choice was made from.
    """

    transform: str
    rule_index: int | None
    rule: Rule | None
    reason: str
    stats: ImbalanceStats

    @property
    def row(self) -> int | None:
        """1-based row number as printed by :func:`format_rules`, or ``None``."""
        return None if self.rule_index is None else self.rule_index + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for run cards and the CLI's ``--json``)."""
        return {
            "transform": self.transform,
            "rule_index": self.rule_index,
            "row": self.row,
            "condition": None if self.rule is None else self.rule.describe(),
            "rule": None if self.rule is None else self.rule.to_dict(),
            "reason": self.reason,
            "stats": self.stats.to_dict(),
        }


def select_transform(stats: ImbalanceStats, rules: Sequence[Rule] = DEFAULT_RULES) -> Selection:
    """Pick the loss transform for ``stats`` with the first matching row of ``rules``.

    Parameters
    ----------
    stats : ImbalanceStats
        From :func:`napari_calf.calf.stats.imbalance_stats`.
    rules : sequence of Rule
        The table, top to bottom. Defaults to :data:`DEFAULT_RULES`.

    Returns
    -------
    Selection
        Undefined statistics (N = 0, N < 3, σ = 0) give ``bce-dice`` with the reason
        they are undefined; a table in which no row matches gives ``bce-dice`` and
        says so. Never raises for valid ``stats``.
    """
    rules = tuple(rules)
    for i, rule in enumerate(rules):
        if not isinstance(rule, Rule):
            raise CalfConfigError(
                f"rule table row {i + 1} is a {type(rule).__name__}, not a Rule. "
                "Fix: build rows with napari_calf.calf.stats.Rule or load them with load_rules()."
            )
    if stats.skewness is None or stats.kurtosis is None:
        why = stats.undefined_reason or "skewness and kurtosis are undefined"
        return Selection(
            "bce-dice", None, None,
            f"{why}: the size distribution has no shape to adapt to \u2192 bce-dice", stats,
        )
    s, k = stats.skewness, stats.kurtosis
    for i, rule in enumerate(rules):
        if rule.matches(s, k):
            if rule.is_catch_all:
                shown = f"S = {_fmt_value(s)}, K = {_fmt_value(k)}"
                condition = (
                    f"{shown} match none of rows 1\u2013{i}" if i > 0 else f"{shown} (otherwise)"
                )
            else:
                condition = rule.explain(s, k)
            note = f": {rule.note}" if rule.note else ""
            return Selection(
                rule.transform, i, rule, f"{condition}{note} \u2192 {rule.transform}", stats
            )
    return Selection(
        "bce-dice", None, None,
        f"S = {_fmt_value(s)}, K = {_fmt_value(k)} match no row of the rule table "
        f"({len(rules)} rows, no 'otherwise' row): fallback \u2192 bce-dice",
        stats,
    )
