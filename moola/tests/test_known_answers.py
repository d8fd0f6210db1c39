"""A known answer at smoke size, on data (docs/JUDGING.md, "Known answers"): a set every
model reads perfectly (moola.testing.write_easy_trend). The deep baseline is level with
MiniRocket, so gate 2 passes; SimpleLSTM is as good as the pretrained model, so gate 6 must
not call it beaten, and the decision must not deploy the pretrained model for it. Gate 7's
known answers are in test_known_answers_gate_7.py (a module of its own: pytest-xdist's
--dist loadfile runs the two modules on two workers). The standard-profile panel of every
case is bench/known_answers.py."""

from __future__ import annotations

import json

import pytest

from moola.testing import (ONE_SEED_PER_FOLD, read_results, run_gate_session, write_easy_trend,
                           write_gate_suite)

pytestmark = pytest.mark.slow


def test_every_model_reads_an_easy_trend_so_gate_2_passes_and_gate_6_does_not(tmp_path):
    root = write_gate_suite(tmp_path / "project")
    write_easy_trend(root / "easy", seed=1)
    (root / "one_seed.toml").write_text(ONE_SEED_PER_FOLD)  # every model reads it at once
    r = run_gate_session(root, "--profile", "smoke", "--data=easy", "-p", "no:randomly",
                         "-k", "not gate_5 and not gate_7", "--gates-config", "one_seed.toml")
    assert r.returncode == 0, r.stdout[-3000:]
    recs = {x["gate"]: x for x in read_results(root)}
    assert recs["gate_1_smoke_enhanced"]["metrics"]["macro_f1"] == 1.0
    assert recs["gate_2_control_minirocket"]["status"] == "passed", recs["gate_2_control_minirocket"]["reason"]
    g6 = recs["gate_6_baseline_simplelstm"]
    assert g6["status"] != "passed", g6["reason"]  # not called beaten: they are level
    assert g6["comparison"]["simple_macro_f1"] == g6["comparison"]["finetuned_macro_f1"]
    decision = json.loads((root / "reports" / "report.json").read_text())["decision"]
    assert decision["recommended"] not in ("finetuned", None), decision["reason"]
