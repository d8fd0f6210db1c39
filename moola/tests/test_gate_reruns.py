"""Real smoke sessions in a scratch project: reruns reuse the cache, bad data stops the chain.

Each session is a real `pytest` subprocess over a copy of gates_tests/ (the same files users
run), with its own reports/ and .moola-cache/. These tests train real models, so they are
marked slow; they still run in CI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moola.testing import cache_events, read_results, run_gate_session, write_gate_suite

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "fixtures" / "smoke"

pytestmark = pytest.mark.slow


def _session(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run_gate_session(root, "--profile", "smoke", *args)


def _events(root: Path, run_id: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in cache_events(root, run_id):
        out.setdefault(e["kind"], e["event"])  # the first event per kind in that run
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A scratch project after a smoke run of gates 0-6, with a sync command recording calls."""
    root = write_gate_suite(tmp_path_factory.mktemp("chain"))
    sync = f'echo "$MOOLA_SYNC_REASON" >> {root / "sync_calls.txt"}'
    r = _session(root, f"--data={SMOKE}", "-k", "not gate_7 and not decision",
                 f"--sync-cmd={sync}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return root


def test_chain_logs_every_gate_and_syncs_at_checkpoints_evals_and_end(trained):
    recs = read_results(trained)
    assert [r["gate"] for r in recs] == [
        "gate_0_env", "gate_1_smoke_enhanced", "gate_2_control_minirocket",
        "gate_3_pretrain_bilstm", "gate_4_finetune_enhanced", "gate_5_augment",
        "gate_6_baseline_simplelstm", "decision"]  # made at the session's end (-k left it out)
    assert "made at the end of the session" in recs[-1]["reason"]
    recs = recs[:-1]
    assert all(r["status"] in ("passed", "warning", "inconclusive") for r in recs)
    # gate 3 judged reconstruction on the held-out windows that chose no epoch, with a CI
    from moola.config import load_config
    from moola.data import load_dataset
    from moola.pretrain import split_unlabeled, stop_and_score

    n = len(load_dataset(SMOKE).X_unlabeled)
    stop, scored = stop_and_score(split_unlabeled(n, load_config("smoke").pretrain.val_fraction)[1])
    recon = recs[3]["metrics"]["reconstruction"]
    assert recon["n_windows"] == len(scored) and len(stop) + len(scored) < n
    lo, hi = recon["ratio_ci"]
    assert lo <= recon["ratio"] <= hi and "per_window" not in recon
    calls = set((trained / "sync_calls.txt").read_text().split())
    assert {"checkpoint", "eval", "final"} <= calls
    run = recs[0]["run_id"]
    for gate in ("gate_1_smoke_enhanced", "gate_4_finetune_enhanced"):
        d = trained / "reports" / "runs" / run / gate
        assert (d / "metrics.csv").exists()
        assert (d / "confusion_matrix.png").exists() and (d / "learning_curves.png").exists()


def test_warm_rerun_of_gate_4_reuses_encoder_and_baseline_and_retrains_gate_4(trained):
    r = _session(trained, f"--data={SMOKE}", "-k", "gate_4")
    assert r.returncode == 0, r.stdout[-3000:]
    run_id = read_results(trained)[-1]["run_id"]
    ev = _events(trained, run_id)
    assert ev["encoder"] == "hit", ev  # asserted from the cache, not from timing
    assert ev["baseline"] == "hit", ev
    assert ev["finetuned"] == "build", ev
    assert [r["gate"] for r in read_results(trained)][-2:] == ["gate_4_finetune_enhanced",
                                                             "decision"]


def test_gate_6_alone_in_a_fresh_session_uses_cached_upstream(trained):
    r = _session(trained, f"--data={SMOKE}", "-k", "gate_6")
    assert r.returncode == 0, r.stdout[-3000:]
    run_id = read_results(trained)[-1]["run_id"]
    ev = _events(trained, run_id)
    assert ev["simple"] == "build"
    # gate 6 needs gates 0, 1, 3 and 4 (not gate 5 or the control): only those are judged
    assert {ev[k] for k in ("baseline", "encoder", "finetuned")} == {"hit"}
    assert "augmented" not in ev and "control" not in ev


def test_changed_threshold_rejudges_without_retraining(trained, tmp_path):
    cfg = tmp_path / "strict.toml"
    cfg.write_text("[gates]\nprobe_min_macro_f1 = 0.99\n")
    r = _session(trained, f"--data={SMOKE}", "-k", "gate_5", f"--gates-config={cfg}")
    assert r.returncode == 0  # gate 5 is skipped, not failed: its upstream gate 3 failed
    rec = [r for r in read_results(trained) if r["gate"] == "gate_5_augment"][-1]
    assert rec["status"] == "skipped"
    assert "gate_3_pretrain_bilstm" in rec["reason"] and "0.99" in rec["reason"]
    assert "encoder" not in {k for k, v in _events(trained, rec["run_id"]).items()
                             if v == "build"}


def test_shuffled_labels_stop_the_chain_at_gate_1_naming_the_majority_baseline(tmp_path):
    data = tmp_path / "shuffled"
    shutil.copytree(SMOKE, data)
    df = pd.read_parquet(data / "labeled.parquet")
    rng = np.random.default_rng(0)
    df["label"] = rng.permutation(df["label"].to_numpy())  # no signal, class shares kept
    df.to_parquet(data / "labeled.parquet")
    root = write_gate_suite(tmp_path / "proj")
    r = _session(root, f"--data={data}", "-x")
    assert r.returncode == 1
    recs = read_results(root)
    assert [(x["gate"], x["status"]) for x in recs][:2] == [("gate_0_env", "passed"),
                                                           ("gate_1_smoke_enhanced", "failed")]
    reason = recs[1]["reason"]
    assert "majority-class baseline" in reason
    assert "significant skill" in reason or "one class" in reason
    assert "gate_2_control_minirocket" not in [x["gate"] for x in recs]
    # -x stopped the session at gate 1; the decision was made from what it judged: nothing
    assert recs[-1]["gate"] == "decision" and recs[-1]["metrics"]["recommended"] is None
    assert recs[-1]["reason"].startswith("deploy nothing")
