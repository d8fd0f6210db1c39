"""Gate 7's known answers at smoke size, on data (docs/JUDGING.md, "Known answers"): seven
one-channel members (user gates, bench/known_gates/) on moola.testing.write_split_views data.
Members that err on different windows: the ensemble must beat its best member, and the
decision deploys it. Members that err on the same windows (the control): gate 7 does not pass
and a member, not the ensemble, is deployed. The standard-profile panel is
bench/known_answers.py (case members-erring-apart)."""

from __future__ import annotations

import json
import shutil

import pytest

from moola.testing import (ONE_SEED_PER_FOLD, ONE_VIEW_MEMBERS, ONLY_VIEW_MEMBERS_CONFIG,
                           read_results, run_gate_session, write_gate_suite, write_split_views)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("independent", [True, False], ids=["err-apart", "err-together"])
def test_gate_7_passes_members_that_err_apart_and_not_members_that_err_together(tmp_path,
                                                                                independent):
    root = write_gate_suite(tmp_path / "project")
    shutil.copy(ONE_VIEW_MEMBERS, root)
    write_split_views(root / "views", seed=1, independent=independent)
    # one training seed per fold (smoke trains two): seven members of 300 windows are the
    # slowest smoke chain, and the ensemble's gain (about +0.15) needs no seed averaging
    (root / "views.toml").write_text(ONLY_VIEW_MEMBERS_CONFIG + "\n" + ONE_SEED_PER_FOLD)
    r = run_gate_session(root, "--profile", "smoke", "--data=views", "-p", "no:randomly",
                         "--gates-config", "views.toml")
    g7 = {x["gate"]: x for x in read_results(root)}["gate_7_ensemble"]
    members = g7["metrics"]["members_macro_f1"]
    assert sorted(members) == [f"view{c}" for c in range(7)], g7["reason"]
    assert max(members.values()) < 0.86  # one channel: at best about 0.75 (+ sampling)
    decision = json.loads((root / "reports" / "report.json").read_text())["decision"]
    if independent:  # the majority of seven is right on about 0.93 of the windows
        assert r.returncode == 0, r.stdout[-3000:]
        assert g7["status"] == "passed" and g7["comparison"]["delta_ci"][0] > 0, g7["reason"]
        assert decision["recommended"] == "ensemble", decision["reason"]
    else:  # every member errs on the same windows: nothing to gain, a member serves
        assert g7["status"] == "inconclusive", g7["reason"]
        assert decision["recommended"] not in ("ensemble", None), decision["reason"]
