"""``moola panel``: the gate chain on several datasets x seeds, on a Dask cluster.

One task is one chain: ``python -m pytest gates_tests --data D --seed S ...`` in the project
directory, as a subprocess of a Dask worker, writing into its own reports directory. The task
reads the chain's results log and report.json and returns plain dicts, which come back to the
client through Dask (the report needs no shared filesystem). The client writes each finished
chain to ``OUT/tasks/<dataset>-s<seed>.json`` (atomically) and rebuilds ``OUT/panel.json`` and
``OUT/panel.html`` from those files, so a rerun with the same ``--out`` skips the chains that
finished (resume).

The engine is Dask distributed: a ``LocalCluster`` of worker processes on the loopback address
(``--workers N``) or a running scheduler (``--scheduler tcp://host:8786``, e.g. started by
dask-jobqueue on Slurm/PBS). A worker killed mid-task is replaced (by its nanny) and the task
runs again (the scheduler's ``allowed-failures``, and ``retries=`` for errors raised by the
task itself). docs/PANELS.md has the user's side.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

TASK_SCHEMA = 1
# a task that raised (not a chain that failed: that is a result) runs again this many times
TASK_RETRIES = 2
# a task whose worker died runs again on another worker; after this many deaths it is a crash
ALLOWED_WORKER_DEATHS = 3
CONNECT_TIMEOUT_S = 10.0
STATUSES = ("passed", "warning", "inconclusive", "failed", "skipped", "crashed")


class PanelInputError(ValueError):
    """Bad input found before any training (exit code 2): the message names it and the fix."""


@dataclass(frozen=True)
class PanelSettings:
    """What every chain of a panel runs with; a finished chain is reused only under the same."""

    profile: str | None = None
    k: str | None = None
    gates: str = "gates_tests"  # the suite, relative to the project: the user's own gates too
    gates_config: str | None = None  # absolute path
    gates_config_sha: str | None = None  # a changed file is another panel
    extra_args: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TaskSpec:
    """One chain: a dataset at a seed, and everything its worker needs to run it."""

    dataset: str  # as the user wrote it (the label in every table)
    data_path: str  # absolute
    seed: int
    project: str  # absolute: the directory holding gates_tests/
    settings: PanelSettings
    torch_threads: int | dict[str, int] | None = None  # a number, or per worker host
    python: str | None = None  # default: the worker's own interpreter (its moola, its torch)

    @property
    def slug(self) -> str:
        """File-name-safe, unique per (dataset path, seed)."""
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.dataset).name or "data").strip("._") or "data"
        digest = hashlib.sha256(self.data_path.encode()).hexdigest()[:8]
        return f"{base[:40]}-{digest}-s{self.seed}"


# ------------------------------------------------------------------------------ the task


# The chain's first lines: die when the worker that started it dies (Linux prctl
# PR_SET_PDEATHSIG, kept across exec), so a killed worker leaves no orphan chain training on
# beside its retry; then become `python -m pytest ARGS`. (A preexec_fn would do the same but is
# unsafe in a worker's threads.)
LAUNCHER = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("moola panel: the worker that started this chain is gone")
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[2:]])
"""


def _threads_here(spec: TaskSpec) -> int | None:
    """The torch threads for a chain on this worker's host."""
    t = spec.torch_threads
    if not isinstance(t, dict):
        return t
    try:
        from distributed import get_worker

        host = get_worker().address.rsplit(":", 1)[0]
    except (ImportError, ValueError):
        return None
    return t.get(host)


def run_task(spec: TaskSpec) -> dict[str, Any]:
    """Run one chain (on a Dask worker) and return its result: plain JSON-able dicts.

    A chain that ends with failed gates is a result like any other; one whose pytest crashed
    (exit code other than 0 or 1, or no results) is returned with ``state: "crashed"`` and
    the end of its output. Each attempt writes into a reports directory of its own, so a
    retry never reads what a killed attempt left.
    """
    t0 = time.time()
    project = Path(spec.project)
    attempt = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    rel = Path("reports") / "panel" / spec.slug / attempt
    reports = project / rel
    reports.mkdir(parents=True, exist_ok=True)
    s = spec.settings
    cmd = [spec.python or sys.executable, "-c", LAUNCHER, str(os.getpid()), s.gates, "-q",
           "-p", "no:randomly",
           "-p", "no:cacheprovider",  # pytest's own cache: tasks must not share lastfailed
           f"--data={spec.data_path}", f"--seed={spec.seed}", f"--reports={rel}"]
    if s.profile:
        cmd.append(f"--profile={s.profile}")
    if s.k:
        cmd += ["-k", s.k]
    if s.gates_config:
        cmd.append(f"--gates-config={s.gates_config}")
    threads = _threads_here(spec)
    if threads:
        cmd.append(f"--torch-threads={threads}")
    cmd += list(s.extra_args)
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(project / ".numba-cache"))  # compiled kernels reused
    if threads:
        # the chains of one machine split its cores: the replicas' and shards' side-by-side
        # threads (moola.train.device.worker_threads) and MiniRocket's numba kernels (numba
        # refuses more than the cores) stay within the chain's share, as torch's threads do
        env["MOOLA_MAX_THREADS"] = str(threads)
        for blas in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(blas, str(threads))  # numpy's and sklearn's BLAS: the same share
        env["NUMBA_NUM_THREADS"] = str(min(threads, os.cpu_count() or threads))
    log_path = reports / "chain.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=project, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            # wait4: this chain's own CPU time (with its helpers), even beside other tasks
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu_s = usage.ru_utime + usage.ru_stime
        except (AttributeError, ChildProcessError):  # no wait4 (not POSIX)
            proc.wait()
            cpu_s = None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    wall = time.time() - t0
    records = _read_jsonl(reports / "gated_workflow_results.jsonl")
    decision = {}
    try:
        decision = json.loads((reports / "report.json").read_text()).get("decision") or {}
    except (OSError, ValueError):
        pass
    crashed = proc.returncode not in (0, 1) or not records
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = None
    return {
        "schema": TASK_SCHEMA,
        "dataset": spec.dataset,
        "data_path": spec.data_path,
        "seed": spec.seed,
        "settings": spec.settings.fingerprint(),
        "state": "crashed" if crashed else "ran",
        "exit_code": proc.returncode,
        "run_id": records[0].get("run_id") if records else None,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu_s, 3) if cpu_s is not None else None,
        "worker": worker,
        "host_pid": os.getpid(),
        "torch_threads": threads,
        "reports": str(reports),
        "recommended": decision.get("recommended") if isinstance(decision, dict) else None,
        "records": [_compact(r) for r in records],
        "log_tail": _tail(log_path) if crashed else None,
        "finished_at": time.time(),
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash: the records before it stand
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def _compact(rec: dict[str, Any]) -> dict[str, Any]:
    """What a panel row keeps of a results record (not the config, nor every metric)."""
    from moola.report.runs import classification

    found = classification(rec.get("metrics"))
    f1 = ci = None
    if found is not None:
        f1 = found[1].get("macro_f1")
        ci = (found[1].get("ci") or {}).get("macro_f1") if isinstance(found[1].get("ci"), dict) else None
    return {"gate": rec.get("gate"), "status": rec.get("status"), "reason": rec.get("reason"),
            "key_metric": rec.get("key_metric"), "macro_f1": f1, "macro_f1_ci": ci,
            "run_id": rec.get("run_id"), "duration_s": rec.get("duration_s")}


# ------------------------------------------------------------------------- validation


def _under(project: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else project / p).resolve()


def validate_inputs(datasets: list[str], project: Path, settings: PanelSettings,
                    python: str = sys.executable, labels: list[str] | None = None) -> list[str]:
    """Check everything that can be checked before training; raise PanelInputError naming the
    first problem. Returns the test ids that `-k` selects (``pytest --co``)."""
    from moola.data import validate_dataset

    gates = settings.gates
    if not (project / gates).is_dir():
        raise PanelInputError(f"no {gates}/ in {project}: run moola panel from the project "
                              f"root (the directory that holds {gates}/), or pass --gates DIR")
    for d, label in zip(datasets, labels or datasets):
        report = validate_dataset(d)
        if not report.ok:
            d = label
            first = report.problems[0] if report.problems else "invalid"
            raise PanelInputError(f"dataset {d} is not valid ({len(report.problems)} problem(s); "
                                  f"first: {first}); see `moola data validate {d}`")
    if settings.gates_config and not Path(settings.gates_config).is_file():
        raise PanelInputError(f"--gates-config {settings.gates_config}: no such file")
    cmd = [python, "-m", "pytest", gates, "--co", "-q", "-p", "no:randomly",
           "-p", "no:cacheprovider"]
    if settings.profile:
        cmd.append(f"--profile={settings.profile}")
    if settings.gates_config:
        cmd.append(f"--gates-config={settings.gates_config}")
    if settings.k:
        cmd += ["-k", settings.k]
    cmd += list(settings.extra_args)
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=300)
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    if proc.returncode == 5 or (proc.returncode == 0 and not ids):
        raise PanelInputError(f"-k {settings.k!r} selects no gate in {project / gates}; the "
                              f"gates are: {', '.join(_gate_names(project, gates, python)) or 'none'}")
    if proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise PanelInputError(f"the gate suite refuses these settings: {said[-1] if said else proc.returncode}")
    return ids


def _gate_names(project: Path, gates: str, python: str) -> list[str]:
    proc = subprocess.run([python, "-m", "pytest", gates, "--co", "-q", "-p", "no:randomly",
                           "-p", "no:cacheprovider"], cwd=project, capture_output=True, text=True,
                          timeout=300)
    return [line.split("::")[-1] for line in proc.stdout.splitlines() if "::" in line]


# --------------------------------------------------------------------------- the engine


def default_workers() -> int:
    """Chains at once on this machine: one per core (each at 1 torch thread), at most one per
    2 GB of memory (a smoke chain holds about 1 GB)."""
    cores = os.cpu_count() or 1
    try:
        import psutil

        cores = min(cores, max(1, psutil.virtual_memory().total // (2 * 1024 ** 3)))
    except ImportError:
        pass
    return max(1, cores)


def local_cluster(workers: int):
    """A LocalCluster of `workers` processes, one thread each, on 127.0.0.1 only."""
    import dask
    from distributed import LocalCluster

    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_WORKER_DEATHS})
    # no dashboard; the scheduler's small HTTP server (health, metrics) on a free loopback
    # port rather than 8787, which a user's own Dask dashboard may hold
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None, silence_logs=40,
                        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S):
    """A Client of the scheduler at `address`; PanelInputError when it cannot be reached."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise PanelInputError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                              f"check the address and that the scheduler is running") from exc


def threads_per_host(client) -> dict[str, int]:
    """Torch threads for a chain on each worker host: its cores over the tasks it runs at once
    (at least 1), so that the workers of one machine do not oversubscribe its cores."""
    info = _workers_info(client)
    slots: dict[str, int] = {}
    for addr, w in info.items():
        host = addr.rsplit(":", 1)[0]
        slots[host] = slots.get(host, 0) + int(w.get("nthreads", 1) or 1)
    cores = client.run(os.cpu_count)  # each worker's own machine
    out: dict[str, int] = {}
    for addr, n in cores.items():
        host = addr.rsplit(":", 1)[0]
        out[host] = max(1, int(n or 1) // max(1, slots.get(host, 1)))
    return out


def _workers_info(client) -> dict[str, Any]:
    """Every worker the scheduler knows (recent releases list only a few unless asked)."""
    import inspect

    if "n_workers" in inspect.signature(client.scheduler_info).parameters:
        return client.scheduler_info(n_workers=-1)["workers"]
    return client.scheduler_info()["workers"]


# ------------------------------------------------------------------------------- resume


def task_file(out: Path, spec: TaskSpec) -> Path:
    return out / "tasks" / f"{spec.slug}.json"


def load_finished(out: Path, spec: TaskSpec) -> dict[str, Any] | None:
    """The stored result of this chain when it ran to the end under the same settings."""
    try:
        res = json.loads(task_file(out, spec).read_text())
    except (OSError, ValueError):
        return None
    if (res.get("schema") != TASK_SCHEMA or res.get("settings") != spec.settings.fingerprint()
            or res.get("state") != "ran"):
        return None  # a crashed chain, or other settings: run it (again)
    return res


# --------------------------------------------------------------------------------- run


@dataclass
class Progress:
    """Tasks done / running / left and an ETA, printed as they change (at most every few s)."""

    total: int
    out: Any = sys.stderr
    every_s: float = 5.0
    done: int = 0
    running: int = 0
    t0: float = field(default_factory=time.time)
    _last: float = 0.0
    _said: str = ""
    walls: list[float] = field(default_factory=list)
    workers: int = 1

    def eta(self) -> float | None:
        left = self.total - self.done
        if not self.walls or left <= 0:
            return None if left else 0.0
        mean = sum(self.walls) / len(self.walls)
        return mean * left / max(1, self.workers)

    def show(self, force: bool = False) -> None:
        from moola.report.fmt import human_duration

        left = self.total - self.done - self.running
        eta = self.eta()
        line = (f"panel: {self.done}/{self.total} chains done, {self.running} running, {left} "
                f"waiting; elapsed {human_duration(time.time() - self.t0)}"
                + (f", ETA {human_duration(eta)}" if eta is not None else ""))
        now = time.time()
        if force or (line.split(";")[0] != self._said and now - self._last >= 0.5) \
                or now - self._last >= self.every_s:
            print(line, file=self.out, flush=True)
            self._last, self._said = now, line.split(";")[0]


def run_panel(datasets: list[str], seeds: list[int], out: str | Path, *,
              settings: PanelSettings, workers: int | None = None, scheduler: str | None = None,
              torch_threads: int | None = None, project: str | Path | None = None,
              connect_timeout: float = CONNECT_TIMEOUT_S, log: Any = None,
              on_submitted: Callable[[Any, list[Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a panel and write OUT/panel.json and OUT/panel.html; returns the panel.

    `project`: the directory holding gates_tests/ (default: the current directory).

    Raises PanelInputError before any training for a bad dataset, a `-k` that selects no gate,
    or a scheduler that cannot be reached. `on_submitted(client, futures)` is a hook for tests.
    """
    project = Path(project or os.getcwd()).resolve()
    out = Path(out).resolve()
    log = log or sys.stderr  # looked up now: a test may have replaced it
    datasets = list(dict.fromkeys(datasets))  # a dataset named twice runs once
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not datasets or not seeds:
        raise PanelInputError("a panel needs at least one dataset and one seed (--seeds 1 2 3)")
    if scheduler is None and (workers is None or workers < 1):
        raise PanelInputError("--workers must be at least 1")
    paths = [str(_under(project, d)) for d in datasets]  # relative: to the project, like pytest's
    validate_inputs(paths, project, settings, labels=datasets)
    client = connect(scheduler, connect_timeout) if scheduler is not None else None
    specs = [TaskSpec(d, p, s, str(project), settings) for d, p in zip(datasets, paths)
             for s in seeds]
    results: dict[str, dict[str, Any]] = {}
    todo: list[TaskSpec] = []
    for spec in specs:
        res = load_finished(out, spec)
        if res is not None:
            results[spec.slug] = res
        else:
            todo.append(spec)
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    print(f"panel: {len(specs)} chains ({len(datasets)} dataset(s) x {len(seeds)} seed(s)); "
          f"{len(results)} finished earlier in {out} (not rerun), {len(todo)} to run", file=log)
    t0 = time.time()
    engine = "none (every chain had finished)"
    n_workers = 0
    if todo:
        engine, n_workers = _run_on_dask(todo, results, out, client=client, workers=workers,
                                         scheduler=scheduler, torch_threads=torch_threads,
                                         connect_timeout=connect_timeout, log=log,
                                         on_submitted=on_submitted)
    elif client is not None:
        client.close()
    wall = time.time() - t0
    panel = build_panel(specs, results, settings=settings, engine=engine, wall_s=wall,
                        workers=n_workers, ran_now=len(todo))
    from moola.io_utils import atomic_write_json, atomic_write_text
    from moola.report.panel_html import build_panel_html

    atomic_write_json(out / "panel.json", panel)
    atomic_write_text(out / "panel.html", build_panel_html(panel), fsync=False)
    return panel


def _run_on_dask(todo: list[TaskSpec], results: dict[str, dict[str, Any]], out: Path, *,
                 client: Any, workers: int | None, scheduler: str | None, torch_threads: int | None,
                 connect_timeout: float, log: Any,
                 on_submitted: Callable[[Any, list[Any]], None] | None) -> tuple[str, int]:
    """Submit the chains, store each result as it comes back; returns (engine, workers)."""
    from distributed import Client, as_completed

    from moola.io_utils import atomic_write_json

    cluster = None
    if client is not None:  # connected to --scheduler before anything was written
        engine = f"Dask scheduler {scheduler}"
    else:
        cluster = local_cluster(workers)
        client = Client(cluster)
        engine = f"Dask LocalCluster, {workers} worker process(es) on 127.0.0.1"
    try:
        n_workers = len(_workers_info(client))
        if n_workers == 0:  # a batch-queue cluster may still be starting its workers
            try:
                client.wait_for_workers(1, timeout=connect_timeout)
            except TimeoutError:
                print("panel: the scheduler has no worker yet; the chains wait for one",
                      file=log)
            n_workers = len(_workers_info(client))
        if torch_threads is not None:
            threads: int | dict[str, int] = torch_threads
        elif cluster is not None:
            threads = max(1, (os.cpu_count() or 1) // workers)
        else:
            threads = threads_per_host(client)
        for spec in todo:
            spec.torch_threads = threads
        futures = [client.submit(run_task, spec, key=f"chain-{spec.slug}-{uuid.uuid4().hex[:6]}",
                                 retries=TASK_RETRIES, pure=False) for spec in todo]
        by_key = {f.key: spec for f, spec in zip(futures, todo)}
        if on_submitted is not None:
            on_submitted(client, futures)
        progress = Progress(total=len(todo), out=log, workers=n_workers)
        pending = set(futures)
        finished = as_completed(futures)
        while pending:
            done = finished.next_batch(block=False) if finished.has_ready() else []
            if not done:
                time.sleep(0.5)
            for f in done:
                pending.discard(f)
                spec = by_key[f.key]
                try:
                    res = f.result()
                except Exception as exc:  # the engine gave up: the chain is a crashed row
                    res = _crashed(spec, exc)
                results[spec.slug] = res
                atomic_write_json(task_file(out, spec), res)
                progress.done += 1
                progress.walls.append(float(res.get("wall_s") or 0))
                print(f"panel: {spec.dataset} seed {spec.seed}: {_chain_line(res)}", file=log)
            progress.running = _running(client, {f.key for f in pending})
            progress.show(force=bool(done))
        return engine, n_workers
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _running(client, keys: set[str]) -> int:
    """Chains executing now: a worker holds up to its threads' worth of its queued tasks."""
    try:
        processing, nthreads = client.processing(), client.nthreads()
    except (OSError, TimeoutError):
        return 0
    return sum(min(sum(1 for k in ks if k in keys), nthreads.get(w, 1))
               for w, ks in processing.items())


def _crashed(spec: TaskSpec, exc: BaseException) -> dict[str, Any]:
    return {"schema": TASK_SCHEMA, "dataset": spec.dataset, "data_path": spec.data_path,
            "seed": spec.seed, "settings": spec.settings.fingerprint(), "state": "crashed",
            "exit_code": None, "run_id": None, "wall_s": None, "worker": None,
            "recommended": None, "records": [],
            "log_tail": f"the engine gave up on this chain: {type(exc).__name__}: {exc}",
            "finished_at": time.time()}


def _chain_line(res: dict[str, Any]) -> str:
    from moola.report.fmt import human_duration

    if res.get("state") == "crashed":
        return f"CRASHED (exit {res.get('exit_code')}); rerun the panel to retry it"
    counts: dict[str, int] = {}
    for r in res.get("records", []):
        counts[r.get("status")] = counts.get(r.get("status"), 0) + 1
    said = ", ".join(f"{n} {s}" for s, n in counts.items())
    return f"{said} in {human_duration(res.get('wall_s'))}"


# ------------------------------------------------------------------------ the panel


def build_panel(specs: list[TaskSpec], results: dict[str, dict[str, Any]], *,
                settings: PanelSettings, engine: str, wall_s: float, workers: int,
                ran_now: int) -> dict[str, Any]:
    """panel.json: the settings, a row per dataset x seed x gate, a chain per dataset x seed,
    and per gate and dataset the outcome counts, the key metric's spread and a sentence."""
    gates: list[str] = []
    for spec in specs:
        for r in (results.get(spec.slug) or {}).get("records", []):
            if r.get("gate") not in gates:
                gates.append(r.get("gate"))
    from moola.report.results import gate_sort_key

    gates.sort(key=lambda g: gate_sort_key(str(g)))
    rows, chains = [], []
    for spec in specs:
        res = results.get(spec.slug) or _crashed(spec, RuntimeError("no result"))
        chains.append({k: res.get(k) for k in ("dataset", "seed", "state", "exit_code", "run_id",
                                               "wall_s", "cpu_s", "worker", "torch_threads", "reports",
                                               "recommended", "log_tail")})
        got = {r.get("gate"): r for r in res.get("records", [])}
        for g in gates or ["chain"]:
            r = got.get(g)
            if r is None:  # every chain selects the same gates: a missing one is a crash
                if res.get("state") == "crashed":
                    tail = (res.get("log_tail") or "").strip().splitlines()
                    reason = (f"the chain crashed (exit code {res.get('exit_code')}) before "
                              f"this gate: {tail[-1] if tail else 'no output'}")
                else:
                    reason = (f"the chain ended (exit code {res.get('exit_code')}) without a "
                              f"result for this gate; see {res.get('reports')}/chain.log")
                r = {"gate": g, "status": "crashed", "reason": reason, "key_metric": None,
                     "macro_f1": None, "macro_f1_ci": None, "run_id": res.get("run_id")}
            rows.append({"dataset": spec.dataset, "seed": spec.seed, **r})
    return {
        "panel": {"datasets": list(dict.fromkeys(s.dataset for s in specs)),
                  "seeds": list(dict.fromkeys(s.seed for s in specs)),
                  "settings": asdict(settings), "engine": engine, "workers": workers,
                  "chains": len(specs), "ran_now": ran_now, "wall_s": round(wall_s, 3),
                  "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "summary": summarize(rows, gates),
        "rows": rows,
        "chains": chains,
    }


def summarize(rows: list[dict[str, Any]], gates: Iterable[str]) -> list[dict[str, Any]]:
    """Per gate and dataset: outcome counts across seeds, the key metric's spread, a sentence."""
    out = []
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for g in gates:
        for d in datasets:
            mine = [r for r in rows if r["gate"] == g and r["dataset"] == d]
            if not mine:
                continue
            counts = {s: sum(1 for r in mine if r.get("status") == s) for s in STATUSES}
            counts = {s: n for s, n in counts.items() if n}
            km = [r["key_metric"] for r in mine if isinstance(r.get("key_metric"), dict)]
            vals = [v for v in (_num(k.get("value")) for k in km) if v is not None]
            f1 = [v for v in (_num(r.get("macro_f1")) for r in mine) if v is not None]
            out.append({
                "gate": g, "dataset": d, "seeds": len(mine), "counts": counts,
                "key_metric": ({"name": km[0].get("name"), "min": min(vals), "max": max(vals),
                                "median": _median(vals), "values": vals} if vals else None),
                "macro_f1": ({"min": min(f1), "max": max(f1), "median": _median(f1)} if f1 else None),
                "holds": len(counts) == 1 and "crashed" not in counts,
                "sentence": sentence(g, d, counts),
            })
    return out


def sentence(gate: str, dataset: str, counts: dict[str, int]) -> str:
    """'gate_4_x: passed at 7/10 seeds on mydata (inconclusive at 3): the verdict depends on
    the seed' and its siblings."""
    n = sum(counts.values())
    judged = {s: c for s, c in counts.items() if s != "crashed"}
    crashed = counts.get("crashed", 0)
    if not judged:
        return f"{gate}: the chain crashed at all {n} seed(s) on {dataset}: no verdict; see its log"
    top = max(judged, key=lambda s: (judged[s], -STATUSES.index(s)))
    others = ", ".join(f"{s} at {c}" for s, c in judged.items() if s != top)
    seeds = "seed" if n == 1 else "seeds"
    text = f"{gate}: {top} at {judged[top]}/{n} {seeds} on {dataset}"
    if others:
        text += f" ({others})"
    if crashed:
        text += f"; {crashed} chain(s) crashed (rerun the panel to retry them)"
    if len(judged) > 1:
        return text + ": the verdict depends on the seed"
    if n == 1:
        return text + ": one seed proves little; add seeds"
    if crashed:
        return text + ": the seeds that ran agree"
    return text + ": the verdict holds across these seeds"


def _num(x: Any) -> float | None:
    from moola.report.fmt import num

    return num(x)


def _median(v: list[float]) -> float:
    s = sorted(v)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


# --------------------------------------------------------------------------- the table


def _range(spread: dict[str, Any]) -> str:
    """'0.722 to 0.725' ('-0.245 to -0.242' stays readable); one value when they are equal."""
    from moola.report.fmt import number

    lo, hi = number(spread.get("min")), number(spread.get("max"))
    return lo if lo == hi else f"{lo} to {hi}"


def terminal_table(panel: dict[str, Any]) -> str:
    """Per gate and dataset: outcomes across seeds, the key metric's and macro-F1's range,
    whether the verdict holds; ASCII only (a log file may not be UTF-8)."""
    from moola.report.fmt import number, shorten

    head = ("gate", "dataset", "outcomes across seeds", "key metric (min to max)",
            "macro-F1 (min to max)", "verdict")
    lines = []
    for s in panel["summary"]:
        km = s.get("key_metric")
        f1 = s.get("macro_f1")
        lines.append((
            s["gate"], shorten(str(s["dataset"]), 28),
            ", ".join(f"{n} {st}" for st, n in s["counts"].items()),
            f"{km['name']} {_range(km)}" if km else "-",
            _range(f1) if f1 else "-",
            "holds" if s["holds"] else ("ONE SEED" if s["seeds"] == 1 else "DEPENDS ON SEED"),
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt_row = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    crashed = [c for c in panel["chains"] if c.get("state") == "crashed"]
    p = panel["panel"]
    tail = [f"chains: {p['chains']} ({p['ran_now']} run now, {p['chains'] - p['ran_now']} "
            f"reused); crashed: {len(crashed)}; engine: {p['engine']}"]
    tail += [f"  crashed: {c['dataset']} seed {c['seed']} (exit {c.get('exit_code')}); see "
             f"{c.get('reports') or 'its worker log'}" for c in crashed]
    return "\n".join([fmt_row(head), "-" * (sum(widths) + 2 * (len(widths) - 1)),
                      *map(fmt_row, lines), *tail])
