"""The known-answer panel's rule for a run (bench/known_answers.py `judge`), on records: when a
must-not-pass run counts as caught, as missed, or as not judged (docs/JUDGING.md)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from moola.testing import REPO


@pytest.fixture(scope="module")
def judge():
    path = REPO / "bench" / "known_answers.py"
    spec = importlib.util.spec_from_file_location("known_answers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while it executes
    try:
        spec.loader.exec_module(module)
        yield module.judge
    finally:
        sys.modules.pop(spec.name, None)


G7 = "gate_7_ensemble"


def test_gate_7_is_caught_when_it_leaves_the_bad_member_out_or_does_not_pass(judge):
    members = {"baseline": 0.8, "finetuned": 0.8}
    left_out = {G7: {"status": "inconclusive", "metrics": {"members_macro_f1": members}}}
    assert judge(7, "not pass", left_out, "ensemble") is True  # built without the bad member
    with_bad = {"members_macro_f1": {**members, "augmented": 0.6}}
    kept = {G7: {"status": "passed", "metrics": with_bad}}
    assert judge(7, "not pass", kept, "ensemble") is False
    kept_not_passed = {G7: {"status": "inconclusive", "metrics": with_bad}}
    assert judge(7, "not pass", kept_not_passed, "control") is True
    assert judge(7, "not pass", kept_not_passed, "ensemble") is False


def test_gate_7_skipping_itself_counts_by_what_it_left_out(judge):
    # fewer than two approved members: gate 7 skips itself, naming what it left out and why
    without_bad = {G7: {"status": "skipped", "metrics": {
        "approved": ["baseline"], "excluded": {"augmented": "skill not shown",
                                               "finetuned": "skill not shown"}}}}
    assert judge(7, "not pass", without_bad, "control") is True
    for_another_reason = {G7: {"status": "skipped", "metrics": {
        "approved": ["baseline"], "excluded": {"finetuned": "skill not shown"}}}}
    assert judge(7, "not pass", for_another_reason, "control") is None
    upstream_skip = {G7: {"status": "skipped", "metrics": {}}}  # a gate it needs did not pass
    assert judge(7, "not pass", upstream_skip, "control") is None
    assert judge(5, "not pass", {"gate_5_augment": {"status": "skipped"}}, "control") is None
