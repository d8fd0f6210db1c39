"""moola.report.fmt: how every report writes numbers, intervals, lists and dicts."""

from __future__ import annotations

import math

import pytest

from moola.report import fmt
from moola.report.summary import format_summary


@pytest.mark.parametrize("x, spec, want", [
    (-0.0001, None, "-0.0001"),  # tiny, not zero: two significant digits, sign kept
    (-0.00001, "+.3f", "0.000"),  # rounds to zero: no "-0.000" / "+0.000"
    (-0.0, None, "0.000"),
    (0.0004997501249375312, None, "0.0005"),  # a permutation p-value, not "0.000"
    (0.7583165497604001, None, "0.758"),
    (1017, None, "1017"), (12345, None, "12,345"),  # a seed is not a quantity; a count is
    (12345.67, None, "12,345.7"),
    (math.nan, None, "—"), (None, None, "—"), ("abc", None, "—"), (True, None, "—"),
])
def test_number(x, spec, want):
    assert fmt.number(x, spec) == want


def test_values_read_as_text_not_python():
    assert fmt.value([0.7146853146853147, 0.7991071428571428]) == "0.715, 0.799"
    assert fmt.value({"consolidation": 57, "retracement": 63}) == "consolidation 57; retracement 63"
    assert fmt.value({"ci": [-0.00001, 0.2], "ok": True}) == "ci [0.000, 0.200]; ok yes"
    assert fmt.value([0.1, 0.2], key="delta_ci") == "[0.100, 0.200]"
    assert fmt.value([0.1, 0.2], key="per_seed") == "0.100, 0.200"  # a pair of seeds
    assert fmt.value({}) == fmt.value([]) == fmt.value(None) == "—"
    assert fmt.percent(-0.0001) == "0%"


def test_key_metric_and_the_terminal_summary():
    rec = {"gate": "gate_1_smoke_enhanced", "status": "passed", "duration_s": 10.63,
           "reason": "pooled  macro-F1\n0.758", "key_metric": {
               "name": "skill_p", "value": 0.0004997, "threshold": 0.01, "op": "<"}}
    assert fmt.key_metric(rec) == "skill_p 0.0005 < 0.010"
    assert fmt.key_metric(dict(rec, key_metric={"name": "x", "value": 1.0, "threshold": 1,
                                                "op": ">="}), symbols=True) == "x 1.000 ≥ 1"
    assert fmt.key_metric({"key_metric": {"name": "x", "value": None}}) is None
    head, rule, row, counts = format_summary([rec])
    assert counts == "gates: 1 passed, 0 inconclusive, 0 warned, 0 failed, 0 skipped"
    assert row.split() == ["gate_1_smoke_enhanced", "PASS", "skill_p", "0.0005", "<", "0.010",
                           "11", "s", "pooled", "macro-F1", "0.758"]
