"""`moola panel` on a real Dask LocalCluster of 2 worker processes (on 127.0.0.1, not mocked).

One cluster serves the module. The panel runs gates 0-1 and the decision (smoke profile) on
fixtures/smoke and a small generated dataset at seeds 1 and 2 in a scratch project; while it
runs, the test SIGKILLs the worker process that runs a chain: the chain runs again and the panel
is complete. Then: a rerun with the same --out reruns nothing, a lost task file reruns that
chain only (on a LocalCluster the command starts itself), the panel's verdicts equal the same
chain run alone, and bad input is an exit-2 error before training. The rows, sentences, table
and page are unit-tested on made-up results.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from moola.cli import main
from moola.panel import (PanelSettings, TaskSpec, build_panel, local_cluster, run_panel,
                         sentence, summarize, terminal_table)
from moola.report.panel_html import build_panel_html
from moola.testing import SMOKE_DATA, read_results, run_gate_session, write_gate_suite

K = "gate_0 or gate_1"
SETTINGS = PanelSettings(profile="smoke", k=K, gates=".")  # a scratch project: tests at its root
GATES = ["gate_0_env", "gate_1_smoke_enhanced", "decision"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client

    c = local_cluster(2)  # processes, 1 thread each, 127.0.0.1, allowed-failures 3
    client = Client(c)
    assert all(addr.startswith("tcp://127.0.0.1:") for addr in client.scheduler_info()["workers"])
    assert c.scheduler_address.startswith("tcp://127.0.0.1:")
    # every socket the scheduler, the nannies and the workers listen on is on the loopback
    import psutil

    pids = {os.getpid(), *client.run(os.getpid).values(),
            *(p.pid for p in psutil.Process().children(recursive=True))}
    listening = [conn.laddr for conn in psutil.net_connections(kind="inet")
                 if conn.status == psutil.CONN_LISTEN and conn.pid in pids]
    assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
    yield c
    client.close()
    c.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = write_gate_suite(tmp_path_factory.mktemp("panel_project"))
    from moola.data import generate_synthetic

    generate_synthetic(root / "synth", n_labeled=60, n_unlabeled=200, seed=17)
    return root


def _attempts(root: Path, dataset: str, seed: int) -> list[Path]:
    return sorted((root / "reports" / "panel").glob(f"{dataset}-*-s{seed}/*"))


def _kill_a_running_chain(root: Path, killed: dict) -> None:
    """SIGKILL the worker process whose chain (a pytest subprocess in `root`: never another
    panel's on the same machine) has been running 1 s."""
    import psutil

    deadline = time.time() + 60
    while time.time() < deadline:
        for p in psutil.process_iter(["cmdline", "ppid", "create_time", "cwd"]):
            cmd = p.info["cmdline"] or []
            reports = [a for a in cmd if a.startswith("--reports=reports/panel/")]
            ours = p.info["cwd"] is not None and Path(p.info["cwd"]).resolve() == root.resolve()
            if reports and ours and "pytest" in cmd and time.time() - p.info["create_time"] > 1.0:
                killed.update(worker_pid=p.info["ppid"], reports=reports[0].split("=", 1)[1])
                os.kill(p.info["ppid"], signal.SIGKILL)
                return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def panel(cluster, project, tmp_path_factory):
    """The panel, with a worker killed mid-chain; (panel, out dir, what was killed)."""
    out = tmp_path_factory.mktemp("panel_out")
    killed: dict = {}
    threads: list[threading.Thread] = []

    def on_submitted(client, futures):
        t = threading.Thread(target=_kill_a_running_chain, args=(project, killed), daemon=True)
        t.start()
        threads.append(t)

    t0 = time.time()
    result = run_panel([str(SMOKE_DATA), "synth"], [1, 2], out, settings=SETTINGS,
                       scheduler=cluster.scheduler_address, torch_threads=1, project=project,
                       on_submitted=on_submitted)
    threads[0].join(5)
    result["_wall"] = time.time() - t0
    return result, out, killed


def test_a_killed_worker_loses_no_row(panel, project):
    result, out, killed = panel
    assert killed, "no chain was found running to kill"
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 3  # dataset x seed x gate
    assert {(r["dataset"], r["seed"], r["gate"]) for r in rows} == {
        (d, s, g) for d in (str(SMOKE_DATA), "synth") for s in (1, 2) for g in GATES}
    assert all(c["state"] == "ran" for c in result["chains"]), result["chains"]
    assert all(r["status"] != "crashed" for r in rows)
    # the killed attempt stopped with its worker (no orphan finished it); a retry finished
    dead = project / killed["reports"]
    assert (dead / "chain.log").exists() and not (dead / "report.json").exists()
    siblings = [p for p in dead.parent.iterdir() if p != dead]
    assert any((p / "report.json").exists() for p in siblings)
    # panel.json and the per-chain task files on disk; a row carries what the issue asks
    on_disk = json.loads((out / "panel.json").read_text())
    assert on_disk["rows"] == rows
    assert len(list((out / "tasks").glob("*.json"))) == 4
    g1 = [r for r in rows if r["gate"] == "gate_1_smoke_enhanced"][0]
    assert {"status", "key_metric", "macro_f1", "macro_f1_ci", "reason", "run_id"} <= set(g1)
    assert len(g1["macro_f1_ci"]) == 2 and g1["key_metric"]["name"] == "skill_p"
    page = (out / "panel.html").read_text()
    assert "gate_1_smoke_enhanced: " in page and "seeds on synth" in page


def test_rerun_with_the_same_out_reruns_nothing(panel, project, cluster, monkeypatch, capsys):
    result, out, _ = panel
    before = {p: p.stat().st_mtime_ns for p in (out / "tasks").glob("*.json")}
    monkeypatch.chdir(project)
    code = main(["panel", str(SMOKE_DATA), "synth", "--seeds", "1", "2", "--profile", "smoke",
                 "-k", K, "--gates", ".", "--scheduler", cluster.scheduler_address, "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "4 finished earlier" in said.err and "0 to run" in said.err
    assert {p: p.stat().st_mtime_ns for p in (out / "tasks").glob("*.json")} == before
    assert json.loads((out / "panel.json").read_text())["rows"] == result["rows"]
    assert "gate_1_smoke_enhanced" in said.out and "holds" in said.out  # the terminal table


def test_a_lost_chain_reruns_alone_on_a_local_cluster_the_command_starts(panel, project,
                                                                         monkeypatch, capsys):
    result, out, _ = panel
    lost = sorted((out / "tasks").glob("synth-*-s2.json"))[0]
    lost.unlink()
    n_before = {(d, s): len(_attempts(project, d, s)) for d in ("smoke", "synth") for s in (1, 2)}
    monkeypatch.chdir(project)
    code = main(["panel", str(SMOKE_DATA), "synth", "--seeds", "1", "2", "--profile", "smoke",
                 "-k", K, "--gates", ".", "--workers", "2", "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "3 finished earlier" in said.err and "1 to run" in said.err
    assert "LocalCluster, 2 worker process(es) on 127.0.0.1" in said.out
    n_after = {(d, s): len(_attempts(project, d, s)) for d in ("smoke", "synth") for s in (1, 2)}
    assert {k: n_after[k] - n_before[k] for k in n_after} == {
        ("smoke", 1): 0, ("smoke", 2): 0, ("synth", 1): 0, ("synth", 2): 1}
    again = json.loads((out / "panel.json").read_text())
    [rerun] = [c for c in again["chains"] if c["dataset"] == "synth" and c["seed"] == 2]
    assert rerun["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)  # cores // workers
    key = lambda r: (r["dataset"], r["seed"], r["gate"], r["status"])  # noqa: E731
    assert sorted(map(key, again["rows"])) == sorted(map(key, result["rows"]))


def test_the_panels_verdicts_equal_the_chain_run_alone(panel, project):
    result, _, _ = panel
    r = run_gate_session(project, "--profile", "smoke", f"--data={SMOKE_DATA}", "--seed=2",
                         "-k", K, "--torch-threads=1", "-p", "no:randomly")
    assert r.returncode == 0, r.stdout[-2000:]
    alone = {rec["gate"]: rec for rec in read_results(project)}
    mine = {row["gate"]: row for row in result["rows"]
            if row["dataset"] == str(SMOKE_DATA) and row["seed"] == 2}
    assert set(alone) == set(mine)
    for gate, row in mine.items():
        assert row["status"] == alone[gate]["status"], gate
        f1 = (alone[gate].get("metrics") or {}).get("macro_f1")
        if f1 is not None:
            assert row["macro_f1"] == pytest.approx(f1, abs=1e-9), gate


def test_two_workers_building_the_same_cache_entry_take_turns(cluster, project, tmp_path):
    """The same chain twice at once on the two workers (two panels sharing a project's
    .moola-cache, or a shared run.cache): each run rebuilds gate 1's baseline under the
    cache's file lock, one build after the other; both reach the same verdict."""
    from distributed import Client

    from moola.panel import run_task
    from moola.testing import cache_events

    data = project / "twice"
    from moola.data import generate_synthetic

    generate_synthetic(data, n_labeled=60, n_unlabeled=200, seed=5)
    spec = TaskSpec("twice", str(data), 3, str(project), SETTINGS, torch_threads=1)
    with Client(cluster.scheduler_address) as client:
        workers = sorted(client.scheduler_info()["workers"])
        first, second = client.gather([client.submit(run_task, spec, pure=False, workers=[w])
                                       for w in workers])
    assert first["worker"] != second["worker"]  # really on both workers at once
    assert first["state"] == second["state"] == "ran"
    verdicts = [[(r["gate"], r["status"], r["macro_f1"]) for r in res["records"]]
                for res in (first, second)]
    assert verdicts[0] == verdicts[1]
    runs = {first["run_id"], second["run_id"]}
    builds = [e for e in cache_events(project) if e["run_id"] in runs and e["kind"] == "baseline"]
    assert [e["event"] for e in builds] == ["build", "build"]
    assert builds[0]["key"] == builds[1]["key"]
    manifest = json.loads((project / ".moola-cache" / "baseline" / builds[1]["key"]
                           / "manifest.json").read_text())
    # the second build started after the first was published: no overlap
    assert builds[1]["at"] - builds[0]["at"] >= manifest["build_s"] - 0.05


def test_a_crashed_chain_is_a_row_that_says_so_exit_1_and_is_retried_on_resume(
        cluster, tmp_path, monkeypatch, capsys):
    """A chain whose pytest dies (here os._exit(3) in a test) gives crashed rows, not a lost
    panel; the command exits 1 and a rerun with the same --out runs that chain again."""
    root = tmp_path / "proj"
    (root / "suite").mkdir(parents=True)
    (root / "suite" / "conftest.py").write_text('pytest_plugins = ["moola.plugin"]\n')
    (root / "suite" / "test_boom.py").write_text(
        "import os\n\ndef test_boom():\n    print('about to die', flush=True)\n    os._exit(3)\n")
    monkeypatch.chdir(root)
    out = tmp_path / "out"
    argv = ["panel", str(SMOKE_DATA), "--seeds", "1", "--gates", "suite", "--scheduler",
            cluster.scheduler_address, "--out", str(out)]
    assert main(argv) == 1
    said = capsys.readouterr()
    assert "1 chain(s) crashed" in said.err and "crashed: 1" in said.out
    panel = json.loads((out / "panel.json").read_text())
    [row] = panel["rows"]
    assert row["status"] == "crashed" and "exit code 3" in row["reason"]
    assert main(argv) == 1  # resumed: the crashed chain ran again (and crashed again)
    assert "0 finished earlier" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["bad dataset", "unknown gate", "unreachable scheduler"])
def test_bad_input_is_an_exit_2_error_naming_it_before_training(case, project, tmp_path,
                                                                monkeypatch, capsys):
    bad = tmp_path / "not_a_dataset"
    bad.mkdir()
    args = {"bad dataset": [str(bad), "--workers", "1"],
            "unknown gate": [str(SMOKE_DATA), "-k", "gate_99_nothing", "--workers", "1"],
            "unreachable scheduler": [str(SMOKE_DATA), "--scheduler", "tcp://127.0.0.1:9",
                                      "--connect-timeout", "1"]}[case]
    monkeypatch.chdir(project)
    out = tmp_path / "out"
    code = main(["panel", *args, "--seeds", "1", "--profile", "smoke", "--gates", ".",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert {"bad dataset": str(bad), "unknown gate": "gate_99_nothing",
            "unreachable scheduler": "tcp://127.0.0.1:9"}[case] in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert not out.exists()  # nothing trained, nothing written


# ------------------------------------------------------------------ rows, sentences, page


def _result(dataset: str, seed: int, statuses: dict[str, str], state: str = "ran") -> dict:
    return {"schema": 1, "dataset": dataset, "seed": seed, "state": state, "exit_code": 0,
            "run_id": f"run-{dataset}-{seed}", "wall_s": 5.0, "records": [
                {"gate": g, "status": st, "reason": f"{g} said {st}", "run_id": f"run-{seed}",
                 "key_metric": {"name": "skill_p", "value": 0.001 * seed, "threshold": 0.01,
                                "op": "<"}, "macro_f1": 0.7, "macro_f1_ci": [0.6, 0.8]}
                for g, st in statuses.items()],
            "log_tail": "Traceback ...\nRuntimeError: boom" if state == "crashed" else None}


def test_sentences_say_whether_the_verdict_holds():
    assert sentence("gate_4", "mydata", {"passed": 7, "inconclusive": 3}) == (
        "gate_4: passed at 7/10 seeds on mydata (inconclusive at 3): the verdict depends on the seed")
    assert sentence("gate_1", "d", {"passed": 3}).endswith("the verdict holds across these seeds")
    assert sentence("gate_1", "d", {"failed": 1}).endswith("one seed proves little; add seeds")
    assert "1 chain(s) crashed" in sentence("gate_1", "d", {"passed": 2, "crashed": 1})
    assert "crashed at all 2" in sentence("gate_1", "d", {"crashed": 2})


def test_a_crashed_chain_is_a_row_per_gate_that_says_so_and_the_page_escapes_names():
    name = "<script>alert(1)</script>"
    specs = [TaskSpec(name, "/x", s, "/p", SETTINGS) for s in (1, 2, 3)]
    results = {specs[0].slug: _result(name, 1, {"gate_0_env": "passed", "gate_1_x": "failed"}),
               specs[1].slug: {**_result(name, 2, {}, state="crashed"), "exit_code": 3},
               specs[2].slug: _result(name, 3, {"gate_0_env": "passed"})}  # gate 1 went missing
    panel = build_panel(specs, results, settings=SETTINGS, engine="test", wall_s=1.0, workers=2,
                        ran_now=3)
    assert len(panel["rows"]) == 3 * 2  # no row lost
    crashed = [r for r in panel["rows"] if r["seed"] == 2]
    assert [r["gate"] for r in crashed] == ["gate_0_env", "gate_1_x"]
    assert all(r["status"] == "crashed" and "exit code 3" in r["reason"]
               and "RuntimeError: boom" in r["reason"] for r in crashed)
    missing = [r for r in panel["rows"] if r["seed"] == 3 and r["gate"] == "gate_1_x"]
    assert missing[0]["status"] == "crashed" and "without a result" in missing[0]["reason"]
    s = {x["gate"]: x for x in summarize(panel["rows"], ["gate_0_env", "gate_1_x"])}
    assert s["gate_1_x"]["counts"] == {"failed": 1, "crashed": 2} and not s["gate_1_x"]["holds"]
    page = build_panel_html(panel)
    assert name not in page and "&lt;script&gt;" in page
    table = terminal_table(panel)
    assert table.isascii() or "—" not in table
    assert "crashed: 1" in table and "1 failed, 2 crashed" in table


def test_moola_max_threads_caps_a_chains_side_by_side_threads(monkeypatch):
    from moola.train.device import worker_threads

    monkeypatch.delenv("MOOLA_MAX_THREADS", raising=False)
    cores = worker_threads("cpu")
    monkeypatch.setenv("MOOLA_MAX_THREADS", "1")
    assert worker_threads("cpu") == 1
    monkeypatch.setenv("MOOLA_MAX_THREADS", str(cores + 5))  # never more than the cores
    assert worker_threads("cpu") == cores
    monkeypatch.setenv("MOOLA_MAX_THREADS", "junk")
    assert worker_threads("cpu") == cores
