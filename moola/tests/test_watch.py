"""`moola status`: live, finished, stale, crashed, all-null and missing status files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from moola.report import watch
from moola.report.results import append_records, results_path
from moola.report.fmt import human_duration
from moola.report.watch import assess, progress_bar, status_main

HOST = socket.gethostname()


def write_status(reports, **fields):
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "status.json").write_text(json.dumps(fields))


def live_fields(**over):
    now = time.time()
    d = {
        "run_id": "run-42", "gate": "gate_3_pretrain_bilstm", "phase": "train",
        "step": 450, "total_steps": 1000, "epoch": 3, "max_epochs": 8,
        "loss": 0.4321, "lr": 0.001, "throughput": 1234.5, "eta_s": 725,
        "last_eval": {"step": 400, "epoch": 3, "metrics": {"val_loss": 0.45, "val_macro_f1": 0.61},
                      "train_val_gap": 0.05, "timed_out": False, "at": "2026-01-25T19:50:00+00:00"},
        "updated_at": "2026-01-25T19:51:00+00:00", "updated_unix": now, "pid": os.getpid(),
        "host": HOST,
    }
    d.update(over)
    return d


def dead_pid():
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                       capture_output=True, text=True, check=True)
    return int(p.stdout)


def test_live_run_shows_progress_eval_and_finished_gates(tmp_path, capsys):
    reports = tmp_path / "reports"
    write_status(reports, **live_fields())
    append_records(results_path(reports), [
        {"run_id": "run-42", "gate": "gate_0_env", "status": "passed", "reason": "data valid",
         "duration_s": 1.2, "timestamp": "2026-01-25T19:40:00+00:00"},
        {"run_id": "run-42", "gate": "gate_2_control_minirocket", "status": "warning",
         "reason": "MiniRocket beats the baseline by 0.04", "duration_s": 65,
         "timestamp": "2026-01-25T19:45:00+00:00"},
        {"run_id": "run-41", "gate": "gate_1_smoke_enhanced", "status": "failed",
         "reason": "from an older run", "timestamp": "2026-01-24T10:00:00+00:00"},
    ])
    assert status_main([str(reports)]) == 0
    out = capsys.readouterr().out
    assert "run run-42" in out and "gate gate_3_pretrain_bilstm" in out and "phase train" in out
    assert "state live" in out
    assert "45.0%" in out and "step 450/1,000" in out and "epoch 4/8" in out  # the 4th of 8
    assert "loss 0.4321" in out and "lr 0.001" in out and "1,234 samples/s" in out
    assert "ETA 12 min 5 s" in out
    assert "val_macro_f1 0.61" in out and "train/val gap +0.05" in out
    assert "gate_0_env" in out and "data valid" in out and "1.2 s" in out
    assert "warning" in out and "1 min 5 s" in out
    assert "from an older run" not in out  # only this run's gates


def test_finished_run_exits_zero(tmp_path, capsys):
    write_status(tmp_path, **live_fields(phase="done", updated_unix=time.time() - 86400,
                                         pid=dead_pid()))
    assert status_main([str(tmp_path)]) == 0
    assert "state done: finished" in capsys.readouterr().out


def test_failed_run_is_finished_and_says_so(tmp_path, capsys):
    write_status(tmp_path, **live_fields(phase="failed", updated_unix=time.time() - 3600))
    assert status_main([str(tmp_path)]) == 0
    assert "finished with a failure" in capsys.readouterr().out


def test_stale_run_whose_process_is_gone_is_reported_as_crashed(tmp_path, capsys):
    pid = dead_pid()
    write_status(tmp_path, **live_fields(updated_unix=time.time() - 600, pid=pid))
    assert status_main([str(tmp_path)]) == 1
    assert f"process {pid} is gone: the run crashed or was killed" in capsys.readouterr().out


def test_stale_run_on_another_host_looks_stalled(tmp_path, capsys):
    write_status(tmp_path, **live_fields(updated_unix=time.time() - 600, host="elsewhere-xyz"))
    assert status_main([str(tmp_path), "--stale-after", "300"]) == 1
    assert "no update for 10 min 0 s: the run looks stalled" in capsys.readouterr().out


def test_stale_after_is_respected(tmp_path):
    write_status(tmp_path, **live_fields(updated_unix=time.time() - 200, host="elsewhere-xyz"))
    assert status_main([str(tmp_path), "--stale-after", "300"]) == 0
    assert status_main([str(tmp_path)]) == 1  # default 120 s


def test_all_fields_null_never_crashes(tmp_path, capsys):
    fields = dict.fromkeys(live_fields(), None)
    write_status(tmp_path, **fields)
    code = status_main([str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1  # cannot tell whether it is alive
    assert "cannot tell whether the run is alive" in out
    assert "run —" in out and "loss —" in out and "ETA —" in out
    assert "last evaluation of this training: —" in out


def test_null_and_junk_inside_nested_fields(tmp_path, capsys):
    write_status(tmp_path, **live_fields(
        step="abc", total_steps=0, loss=None, lr="n/a", eta_s=-5,
        throughput=True, last_eval={"step": None, "metrics": None, "train_val_gap": None,
                                     "timed_out": None, "at": None}))
    (tmp_path / "gated_workflow_results.jsonl").write_text('{"run_id": "run-42", "gate": "gate_0_env"}\n')
    assert status_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "last evaluation of this training (epoch —, step —): — · train/val gap —" in out
    assert "gate_0_env" in out


def test_timed_out_evaluation_is_named(tmp_path, capsys):
    write_status(tmp_path, **live_fields(last_eval={"step": 200, "epoch": 1, "timed_out": True}))
    status_main([str(tmp_path)])
    assert "timed out" in capsys.readouterr().out


def test_no_status_file_exits_two_and_says_where_it_looked(tmp_path, capsys):
    assert status_main([str(tmp_path / "reports")]) == 2
    out = capsys.readouterr().out
    assert str(tmp_path / "reports" / "status.json") in out and "make gates" in out


def test_unreadable_status_file_exits_one(tmp_path, capsys):
    (tmp_path / "status.json").write_text("{not json")
    assert status_main([str(tmp_path)]) == 1
    assert "not a readable JSON object" in capsys.readouterr().out


def test_watch_refreshes_until_the_run_is_done(tmp_path, capsys):
    write_status(tmp_path, **live_fields())

    def finish():
        time.sleep(0.3)
        write_status(tmp_path, **live_fields(phase="done"))

    t = threading.Thread(target=finish)
    t.start()
    try:
        assert status_main([str(tmp_path), "--watch", "--interval", "0.05"]) == 0
    finally:
        t.join()
    out = capsys.readouterr().out
    assert out.count("state live") >= 2 and "state done" in out
    assert "\x1b[2J" not in out  # not a TTY: no screen clearing


def test_watch_exits_zero_on_ctrl_c(tmp_path, monkeypatch):
    write_status(tmp_path, **live_fields())

    def interrupt(_s):
        raise KeyboardInterrupt

    monkeypatch.setattr(watch.time, "sleep", interrupt)
    assert status_main([str(tmp_path), "--watch"]) == 0


def test_watch_stops_on_a_stale_run(tmp_path):
    write_status(tmp_path, **live_fields(updated_unix=time.time() - 600, pid=dead_pid()))
    assert status_main([str(tmp_path), "--watch", "--interval", "0.05"]) == 1


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--stale-after", "-1"], ["--interval", "x"]])
def test_bad_arguments_are_usage_errors(argv):
    with pytest.raises(SystemExit) as e:
        status_main(argv)
    assert e.value.code == 2


def test_assess_uses_updated_at_when_unix_time_is_missing():
    live = assess({"phase": "train", "updated_at": "2026-01-25T19:00:00+00:00", "host": "x"},
                  now=1769367600.0 + 30)  # 19:00:30 UTC
    assert live.state == "live" and live.age_s == pytest.approx(30)


def test_human_duration_and_progress_bar():
    assert human_duration(None) == "—"
    assert human_duration(3.25) == "3.2 s"
    assert human_duration(42) == "42 s"
    assert human_duration(725) == "12 min 5 s"
    assert human_duration(3 * 3600 + 20 * 60) == "3 h 20 min"
    assert human_duration(2 * 86400 + 4 * 3600) == "2 d 4 h"
    assert progress_bar(5, 10, width=10) == "[#####.....]  50.0%"
    assert progress_bar(50, 10, width=4) == "[####] 100.0%"  # clamped
    assert progress_bar(None, 10, width=4).endswith("—")


def test_reads_what_the_real_status_writer_writes(tmp_path, capsys):
    status = pytest.importorskip("moola.report.status")
    w = status.StatusWriter(tmp_path / "status.json", "run-x", "gate_1_smoke_enhanced")
    w.update(phase="train", step=3, total_steps=10, epoch=0, max_epochs=2, loss=0.7, lr=3e-3,
             throughput=80.0, eta_s=4.2)
    assert status_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "state live" in out and "30.0%" in out and "ETA 4.2 s" in out
    w.update(phase="done")
    assert status_main([str(tmp_path)]) == 0
    assert "state done" in capsys.readouterr().out


def test_gates_finished_in_a_live_run_come_from_the_status_file(tmp_path):
    from moola.report.watch import snapshot

    now = time.time()
    (tmp_path / "status.json").write_text(json.dumps({
        "run_id": "live-run", "gate": "gate_2_control_minirocket", "phase": "train",
        "updated_unix": now, "pid": os.getpid(),
        "gates": {"gate_0_env": {"status": "passed", "reason": "data valid", "duration_s": 1.0},
                  "gate_1_smoke_enhanced": {"status": "passed", "reason": None}}}))
    text, code, state = snapshot(tmp_path, stale_after=120, now=now)
    assert code == 0
    assert "gate_0_env" in text and "data valid" in text and "gate_1_smoke_enhanced" in text


# ---------------------------------------------------------------------------------------------
# where are we: the gate's place, its own progress, the ETAs, the epoch count, the width
# ---------------------------------------------------------------------------------------------

CHAIN = ["gate_0_env", "gate_1_smoke_enhanced", "gate_2_control_minirocket",
         "gate_3_pretrain_bilstm", "gate_4_finetune_enhanced", "gate_5_augment",
         "gate_6_baseline_simplelstm", "gate_7_ensemble"]
NOW = 1_800_000_000.0


def chain_status(**over):
    """A run in gate 4, replica 2 of 4 at 45% of its steps, 30 s into the gate."""
    d = live_fields(run_id="run-new", gate="gate_4_finetune_enhanced", chain=CHAIN,
                    step=45, total_steps=100, epoch=10, max_epochs=25, eta_s=20,
                    replica="seed17_fold1", replica_index=2, replica_count=4,
                    gate_started_unix=NOW - 30, updated_unix=NOW,
                    gates={g: {"status": "passed", "reason": "ok", "duration_s": 2.0}
                           for g in CHAIN[:4]},
                    last_eval={"step": 40, "epoch": 9, "metrics": {"val_macro_f1": 0.6875}})
    d.update(over)
    return d


def earlier_run(reports, run_id="run-old", seconds=10.0, profile="smoke"):
    append_records(results_path(reports), [
        {"run_id": run_id, "gate": g, "status": "passed", "duration_s": seconds,
         "config": {"run": {"profile": profile}}, "timestamp": f"2026-01-0{i + 1}T00:00:00+00:00"}
        for i, g in enumerate(CHAIN)])


def test_the_gate_its_place_its_replicas_and_the_chain_eta(tmp_path):
    earlier_run(tmp_path, "run-a", 10.0)
    earlier_run(tmp_path, "run-b", 30.0)  # median of 10 s and 30 s: 20 s per gate
    earlier_run(tmp_path, "run-full", 900.0, profile="full")  # another profile: not used
    append_records(results_path(tmp_path), [{
        "run_id": "run-new", "gate": "gate_0_env", "status": "passed", "duration_s": 1.0,
        "config": {"run": {"profile": "smoke"}}}])
    write_status(tmp_path, **chain_status())
    text, code, state = watch.snapshot(tmp_path, stale_after=120, now=NOW, width=100)
    assert (code, state) == (0, "live")
    assert "gate gate_4_finetune_enhanced (5th of 8 in the chain)" in text
    # the gate: 1 replica done + 45% of the 2nd = 36.2% of 4 replicas; 30 s so far
    assert "36.2% · replica 2 of 4 · ETA 53 s" in text  # 30 s x (1 - .3625) / .3625
    assert "45.0% · seed17_fold1 · epoch 11/25 · step 45/100 · ETA 20 s" in text
    # the replica's evaluation is named as the replica's, not the run's state
    assert "last evaluation of replica seed17_fold1 (epoch 10, step 40): val_macro_f1 0.6875" in text
    # the chain: 4 of 8 gates done; this gate's 53 s + gates 5-7 at 20 s each (smoke runs only)
    assert "4 of 8 gates finished" in text and "ETA 1 min 53 s" in text
    assert "this gate + 3 more at their median in 2 earlier runs" in text


def test_no_chain_eta_without_earlier_runs_and_it_says_why(tmp_path):
    write_status(tmp_path, **chain_status())
    text, _, _ = watch.snapshot(tmp_path, stale_after=120, now=NOW, width=120)
    assert "ETA — (unknown: no earlier run of gate_5_augment in the log)" in text
    assert "replica 2 of 4 · ETA 53 s" in text  # the gate's own ETA needs no history


def test_the_last_epoch_reads_n_of_n_at_100_percent(tmp_path):
    write_status(tmp_path, **live_fields(step=1500, total_steps=1500, epoch=149, max_epochs=150))
    text, _, _ = watch.snapshot(tmp_path, stale_after=120)
    assert "100.0%" in text and "epoch 150/150" in text and "149/150" not in text


def test_a_finished_gate_with_gates_to_go_is_between_gates_not_done(tmp_path):
    over = chain_status(phase="done", gates={g: {"status": "passed"} for g in CHAIN[:5]})
    write_status(tmp_path, **over)
    text, code, state = watch.snapshot(tmp_path, stale_after=120, now=NOW)
    assert (code, state) == (0, "live")
    assert "gate_4_finetune_enhanced is over, the next gate is starting" in text
    assert "100.0% · over: passed" in text and "5 of 8 gates finished" in text
    # one fit of the gate ending (the trainer's "done") is not the gate's end either
    write_status(tmp_path, **chain_status(phase="done"))
    text, _, state = watch.snapshot(tmp_path, stale_after=120, now=NOW)
    assert state == "live" and "a training of gate_4_finetune_enhanced is over" in text
    assert "50.0% · replica 2 of 4" in text  # the replica's fit is complete
    # once the session's process is gone, "done" is the run's end
    write_status(tmp_path, **dict(over, pid=dead_pid()))
    assert watch.snapshot(tmp_path, stale_after=120, now=NOW)[2] == "done"


@pytest.mark.parametrize("columns", [80, 60])
def test_moola_status_fits_the_terminal_width(tmp_path, columns):
    long_reason = "the encoder's linear probe is not significantly better than a random one " * 3
    write_status(tmp_path, **chain_status(
        updated_unix=time.time(), gate_started_unix=time.time() - 30,
        gates={g: {"status": "inconclusive", "reason": long_reason, "duration_s": 3.0}
               for g in CHAIN[:4]}))
    earlier_run(tmp_path)
    env = dict(os.environ, COLUMNS=str(columns))
    out = subprocess.run([sys.executable, "-m", "moola.cli", "status", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(map(len, lines)) <= columns, "\n".join(x for x in lines if len(x) > columns)
    assert "replica 2 of 4" in out.stdout and "5th of 8 in the chain" in out.stdout
    assert "the encoder's linear" in out.stdout  # a reason is shortened, not dropped


@pytest.mark.parametrize("together", [False, True])
def test_the_real_writers_say_which_gate_and_which_replica(tmp_path, monkeypatch, together):
    import moola.gates  # noqa: F401  (the eight gates, declared on import)
    from moola.config import load_config
    from moola.gates import runner, work
    from moola.gates.context import GateContext
    from moola.gates.registry import REGISTRY, GateSpec, verdict
    from moola.protocol.replicas import train_replicas

    smoke = __import__("pathlib").Path(__file__).resolve().parents[2] / "fixtures" / "smoke"
    cfg = load_config("smoke", overrides={"run.data": str(smoke), "train.max_epochs": 2,
                                          "train.min_epochs": 1, "run.logger": "none",
                                          "train.replicas_together": together})
    ctx = GateContext(cfg=cfg, run_id="t", root=tmp_path)
    seen = []
    update = ctx.status.update
    monkeypatch.setattr(ctx.status, "update", lambda **f: seen.append(update(**f)) or seen[-1])

    def replicas():  # a gate of our own around the real replica loop: two seeds, one fold
        ds = ctx.dataset
        out = tmp_path / "out"
        out.mkdir()
        train_replicas(ctx, "gate_8_replicas", work.folds(ctx)[:1], [17, 1017],
                       lambda seed: work.build_enhanced(ctx, len(ds.classes), ds.X.shape[2]),
                       tmp_path / "work", out,
                       **work.shared_recipe(ctx, "gate_8_replicas"))
        return verdict(True, "trained")

    REGISTRY.add(GateSpec(name="gate_8_replicas", judge=replicas, after=("gate_0_env",)))
    try:
        runner._run(ctx, "gate_8_replicas")
        chain = list(REGISTRY.chain())
    finally:
        REGISTRY.forget_user_gates()
    first = seen[0]
    assert first["chain"] == chain and chain[-2:] == ["gate_8_replicas", "decision"]
    assert first["gate_started_unix"] > 0
    assert first["replica_index"] is None  # no replica left over from an earlier gate
    training = [s for s in seen if s.get("phase") == "train" and s.get("step")]
    if together:  # one line for the gate: replicas done of all, steps of the budget
        last = training[-1]
        assert last["replicas_together"] == {"done": 2, "training": 0, "count": 2}
        assert last["replica_index"] is None and 0 < last["step"] <= last["total_steps"]
        text = watch.render(last, [], watch.assess(last), now=last["updated_unix"], width=100)
        assert "replicas 2 of 2 done, 0 training together" in text
        assert f"step {last['step']}/{last['total_steps']}" in text
    else:
        assert {(s["replica_index"], s["replica_count"]) for s in training} == {(1, 2), (2, 2)}
        assert {s["replica"] for s in training} == {"seed17_fold0", "seed1017_fold0"}
        mid = next(s for s in training if s["replica_index"] == 2)
        text = watch.render(mid, [], watch.assess(mid), now=mid["updated_unix"], width=100)
        assert "replica 2 of 2" in text and "seed1017_fold0" in text
    assert "gate gate_8_replicas (9th of 10 in the chain)" in text


def test_a_finished_chain_has_no_eta_left(tmp_path):
    over = chain_status(gate="gate_7_ensemble", phase="done", pid=dead_pid(),
                        gates={g: {"status": "passed"} for g in CHAIN})
    write_status(tmp_path, **over)
    text, code, state = watch.snapshot(tmp_path, stale_after=120, now=NOW)
    assert (code, state) == (0, "done")
    assert "8 of 8 gates judged; the session is over" in text and "ETA" not in text


def test_a_session_run_with_k_is_over_without_an_eta_for_the_deselected_gates(tmp_path):
    # `-k gate_4`: gates 0-4 judged (0-3 from the cache), 5-7 deselected, the session ended
    over = chain_status(gate="gate_4_finetune_enhanced", phase="done", pid=dead_pid(),
                        gates={g: {"status": "passed"} for g in CHAIN[:5]})
    write_status(tmp_path, **over)
    text, code, state = watch.snapshot(tmp_path, stale_after=120, now=NOW)
    assert (code, state) == (0, "done")
    assert "5 of 8 gates judged; the session is over" in text and "ETA" not in text
