"""The selection rule table: every default row, its reason text, JSON round-trip, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_calf.errors import CalfConfigError, CalfFileExistsError
from napari_calf.calf.rules import DEFAULT_RULES, Rule, select_transform
from napari_calf.calf.stats import ImbalanceStats, imbalance_stats
from napari_calf.calf.rules_io import format_rules, load_rules, rules_from_json, rules_to_json, save_rules


def _stats(s: float, k: float) -> ImbalanceStats:
    return ImbalanceStats(n=100, n_empty=7, mean=10.0, median=9.0, skewness=s, kurtosis=k)


@pytest.mark.parametrize(
    ("s", "k", "row", "transform", "reason"),
    [
        (-2.5, 6.0, 1, "fisher", "S = −2.50 ≤ −1: strongly left-skewed sizes → fisher"),
        (-1.0, 0.0, 1, "fisher", "S = −1.00 ≤ −1: strongly left-skewed sizes → fisher"),
        (-0.73, 0.2, 2, "logit", "−1 < S = −0.73 ≤ −0.5: moderately left-skewed sizes → logit"),
        (-0.5, 0.2, 2, "logit", "−1 < S = −0.50 ≤ −0.5: moderately left-skewed sizes → logit"),
        (0.12, -0.4, 3, "bce-dice", "|S| = 0.12 < 0.5 and |K| = 0.40 < 1: close to normal sizes → bce-dice"),
        (0.5, 0.0, 4, "arcsine", "0.5 ≤ S = 0.50 < 1: moderately right-skewed sizes → arcsine"),
        (2.41, 4.21, 5, "log10",
         "S = 2.41 ≥ 1 and K = 4.21 ≥ 3: strongly right-skewed, heavy-tailed sizes → log10"),
        (1.0, 3.0, 5, "log10",
         "S = 1.00 ≥ 1 and K = 3.00 ≥ 3: strongly right-skewed, heavy-tailed sizes → log10"),
        (1.8, 2.5, 6, "ln", "S = 1.80 ≥ 1: strongly right-skewed sizes → ln"),
        (0.3, 2.0, 7, "bce-dice",
         "S = 0.30, K = 2.00 match none of rows 1–6: a shape no other row covers → bce-dice"),
    ],
)
def test_each_default_row_is_reachable_with_its_reason(s, k, row, transform, reason):
    sel = select_transform(_stats(s, k))
    assert sel.row == row
    assert sel.rule_index == row - 1
    assert sel.rule is DEFAULT_RULES[row - 1]
    assert sel.transform == transform
    assert sel.reason == reason


def test_strict_bounds_are_strict():
    # |S| < 0.5 is strict: S = 0.5 must fall through row 3 to row 4.
    assert select_transform(_stats(0.5, 0.0)).row == 4
    # S < 1 is strict in row 4: S = 1 with light tails is row 6.
    assert select_transform(_stats(1.0, 0.0)).row == 6
    # −1 < S in row 2 is strict: S = −1 is row 1 (first match), S just above is row 2.
    assert select_transform(_stats(-0.999, 0.0)).row == 2


def test_reason_shows_more_digits_when_rounding_would_contradict_the_threshold():
    sel = select_transform(_stats(0.998, 0.0))
    assert sel.row == 4
    assert "S = 0.998 < 1" in sel.reason


def test_describe_writes_conditions_as_in_the_method_table():
    assert [r.describe() for r in DEFAULT_RULES] == [
        "S ≤ −1",
        "−1 < S ≤ −0.5",
        "|S| < 0.5 and |K| < 1",
        "0.5 ≤ S < 1",
        "S ≥ 1 and K ≥ 3",
        "S ≥ 1",
        "otherwise",
    ]
    assert [r.source for r in DEFAULT_RULES] == ["paper"] + ["assumption"] * 5 + ["fallback"]


def test_selection_from_real_samples():
    rng = np.random.default_rng(3)
    assert select_transform(imbalance_stats(rng.lognormal(3, 1, 2000))).transform == "log10"
    assert select_transform(imbalance_stats(rng.normal(500, 20, 2000))).transform == "bce-dice"
    assert select_transform(imbalance_stats(1e5 - rng.lognormal(3, 1, 2000))).transform == "fisher"


@pytest.mark.parametrize("areas", [[], [5.0, 9.0], [4.0, 4.0, 4.0, 0.0]])
def test_undefined_stats_fall_back_to_bce_dice_saying_why(areas):
    stats = imbalance_stats(areas)
    sel = select_transform(stats)
    assert sel.transform == "bce-dice"
    assert sel.rule is None and sel.rule_index is None and sel.row is None
    assert sel.reason.startswith(stats.undefined_reason)
    assert sel.reason.endswith("→ bce-dice")


def test_table_without_matching_row_falls_back_and_says_so():
    rules = (Rule("fisher", "paper", s_max=-1.0),)
    sel = select_transform(_stats(2.0, 5.0), rules)
    assert sel.transform == "bce-dice"
    assert sel.rule is None
    assert "match no row of the rule table" in sel.reason
    assert "S = 2.00" in sel.reason and "K = 5.00" in sel.reason


def test_custom_first_row_wins():
    rules = (Rule("arcsine", note="mine", s_min=2.0), *DEFAULT_RULES)
    sel = select_transform(_stats(2.41, 4.21), rules)
    assert (sel.transform, sel.row) == ("arcsine", 1)
    assert sel.reason == "S = 2.41 ≥ 2: mine → arcsine"


def test_selection_to_dict_is_json_safe():
    sel = select_transform(_stats(2.41, 4.21))
    d = json.loads(json.dumps(sel.to_dict()))
    assert d["transform"] == "log10"
    assert d["row"] == 5
    assert d["condition"] == "S ≥ 1 and K ≥ 3"
    assert d["stats"]["skewness"] == 2.41
    assert d["stats"]["n_empty"] == 7
    undefined = json.loads(json.dumps(select_transform(imbalance_stats([])).to_dict()))
    assert undefined["rule"] is None and undefined["stats"]["skewness"] is None


def test_json_round_trip_keeps_every_bound_and_flag(tmp_path):
    assert rules_from_json(rules_to_json(DEFAULT_RULES)) == DEFAULT_RULES
    path = save_rules(DEFAULT_RULES, tmp_path / "rules.json")
    loaded = load_rules(path)
    assert loaded == DEFAULT_RULES
    # Behaviour, not only equality: the loaded table selects the same way at the edges.
    for s, k in [(-1.0, 0), (-0.5, 0), (0.5, 0), (1.0, 3.0), (1.0, 2.9), (0.2, 5)]:
        assert select_transform(_stats(s, k), loaded).row == select_transform(_stats(s, k)).row
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["rules"][1] == {
        "transform": "logit", "source": "assumption", "note": "moderately left-skewed sizes",
        "s_min": -1.0, "s_min_inclusive": False, "s_max": -0.5, "s_max_inclusive": True,
    }


def test_bare_list_and_edited_thresholds_are_read():
    rows = [{"transform": "ln", "s_min": 0.8}, {"transform": "bce-dice", "source": "fallback"}]
    table = rules_from_json(json.dumps(rows))
    assert select_transform(_stats(0.9, 0.0), table).transform == "ln"
    assert select_transform(_stats(0.7, 0.0), table).transform == "bce-dice"


def test_save_rules_does_not_overwrite_unless_asked(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text("my notes", encoding="utf-8")
    with pytest.raises(CalfFileExistsError, match="rules.json"):
        save_rules(DEFAULT_RULES, path)
    assert path.read_text(encoding="utf-8") == "my notes"
    save_rules(DEFAULT_RULES, path, overwrite=True)
    assert load_rules(path) == DEFAULT_RULES
    assert [p.name for p in tmp_path.iterdir()] == ["rules.json"]  # no temp file left behind


def _doc(*rows):
    return json.dumps({"format": "napari-calf rules", "version": 1, "rules": list(rows)})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_doc({"transform": "ln"}, {"transform": "softmax"}), r"row 2: unknown transform 'softmax'"),
        (_doc({"transform": "ln", "s_mni": 1}), r"row 1: unknown key\(s\) 's_mni'"),
        (_doc({"transform": "ln", "s_min": "1"}), r"row 1: s_min must be a number"),
        (_doc({"transform": "ln", "s_min": True}), r"row 1: s_min must be a number"),
        (_doc({"transform": "ln", "k_min_inclusive": "yes", "k_min": 1}),
         r"row 1: k_min_inclusive must be true or false"),
        (_doc({"transform": "ln"}, {"transform": "ln", "s_min": 2, "s_max": 1}),
         r"row 2: s_min = 2 and s_max = 1 leave no value of S"),
        (_doc({"transform": "ln", "k_min": 1, "k_max": 1, "k_max_inclusive": False}),
         r"row 1: k_min = 1 and k_max = 1 leave no value of K"),
        (_doc({"transform": "ln", "abs_s_max": -0.5}), r"row 1: abs_s_max = -0.5 is negative"),
        (_doc({"transform": "ln", "source": "paper?"}), r"row 1: unknown source 'paper\?'"),
        (_doc({"s_min": 1}), r"row 1: missing key 'transform'"),
        (_doc(["ln", 1]), r"row 1: a rule must be a JSON object"),
        (_doc(), r"the rule table is empty"),
        ('{"rules": [], "extra": 1}', r"unknown top-level key\(s\) 'extra'"),
        ('{"rules": [{"transform": "ln",}]}', r"not valid JSON"),
        ('{"version": 9, "rules": []}', r"version 9 is not supported"),
    ],
)
def test_malformed_tables_are_refused_naming_row_and_problem(text, expected):
    with pytest.raises(CalfConfigError, match=expected):
        rules_from_json(text)


def test_load_rules_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(_doc({"transform": "nope"}), encoding="utf-8")
    with pytest.raises(CalfConfigError, match=r"bad\.json: rule table row 1: unknown transform"):
        load_rules(path)


def test_rule_in_code_is_validated_too():
    with pytest.raises(CalfConfigError, match="unknown transform 'dice'"):
        Rule("dice")
    with pytest.raises(CalfConfigError, match="leave no value"):
        Rule("ln", s_min=1.0, s_max=0.0)


def test_format_rules_lists_every_row():
    text = format_rules(DEFAULT_RULES)
    lines = text.splitlines()
    assert len(lines) == 2 + len(DEFAULT_RULES)
    assert lines[0].split()[:3] == ["#", "condition", "transform"]
    assert "S ≥ 1 and K ≥ 3" in lines[2 + 4] and "log10" in lines[2 + 4]
    assert lines[-1].split()[:3] == ["7", "otherwise", "bce-dice"]


# --------------------------------------------------------------------------- hostile tables
# Numbers JSON allows but floats cannot hold, and nesting deep enough to exhaust Python's
# recursion, once escaped as OverflowError / ValueError / RecursionError tracebacks.


def _table_with(value_text: str) -> str:
    return ('{"format": "napari-calf rules", "version": 1, "rules": [\n'
            '  {"transform": "ln", "source": "paper"},\n'
            f'  {{"transform": "bce-dice", "source": "fallback", "s_min": {value_text}}}\n'
            ']}\n')


@pytest.mark.parametrize("digits", [400, 5001])
def test_a_number_too_large_for_a_float_names_the_file_row_and_field(tmp_path, digits):
    path = tmp_path / "rules.json"
    path.write_text(_table_with("9" * digits))
    with pytest.raises(CalfConfigError) as info:
        load_rules(path)
    msg = str(info.value)
    assert str(path) in msg and "row 2" in msg and "s_min" in msg
    assert f"{digits}-digit" in msg and "Fix:" in msg


def test_deep_nesting_names_the_file_and_where(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(_table_with("[" * 100_000 + "]" * 100_000))
    with pytest.raises(CalfConfigError) as info:
        load_rules(path)
    msg = str(info.value)
    assert str(path) in msg and "nested" in msg and "row 2" in msg and "s_min" in msg
    assert "Fix:" in msg


def test_ordinary_large_but_finite_bounds_still_load():
    (_, rule) = rules_from_json(_table_with("1e300"))
    assert rule.s_min == 1e300
    (_, rule) = rules_from_json(_table_with("3"))
    assert rule.s_min == 3.0
