"""Benchmark training replicas together (moola.train.together) against one replica alone and
against the LSTM kernels' floor, printing a table.

    .venv/bin/python bench/bench_replicas.py [--data data/synthetic] [--replicas 5 15 30]
                                            [--repeats 3] [--chains]

On the gate-1 classifier with the standard recipe, on the last walk-forward fold of the data
(the most training rows):

* one replica alone, as the gates trained it before (``fit_classifier``: one thread), median
  of --repeats seeds;
* R replicas together (seeds run.seed + 1000 i on that fold, ``fit_together`` with the cores
  this process may use): wall seconds, the ratio to one replica alone, and the ratio to the
  floor;
* the floor for those R: the same LSTM forward + backward kernels (the model's own nn.LSTM, the
  batch size of the recipe) for as many steps as the R replicas took, run on a pool of as many
  threads with no training loop around them: what the replicas cost if only the LSTM were paid;
* the model's floor: the whole model's forward + backward kernels (trunks and batched heads,
  grouped as fit_together groups them) for as many steps, with no loop around them: what the
  replicas cost if nothing but the model's arithmetic were paid.

--chains then runs bench/bench_chain.py --standard --alone (the smoke and standard chains end
to end, next to the single-split figures, and the standard chain with replicas one after
another). Not a test: read the ratios, taken in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from moola.config import load_config
from moola.data import load_dataset
from moola.gates.work import build_enhanced, classifier_job, folds
from moola.protocol.replicas import replica_seeds
from moola.train import fit_classifier, seed_everything
from moola.train.together import fit_together, replica_threads


def _jobs(ctx, fold, seeds, tmp: Path, tag: str):
    ds = ctx.dataset
    jobs = []
    for s in seeds:
        seed_everything(s)
        model = build_enhanced(ctx, len(ds.classes), ds.X.shape[2])
        job, _ = classifier_job(ctx, "bench", model, ds.X[fold.fit_idx], ds.y[fold.fit_idx],
                                ds.X[fold.stop_idx], ds.y[fold.stop_idx],
                                tmp / f"{tag}_{s}", seed=s, name=f"seed{s}")
        jobs.append(job)
    return jobs


def one_alone(ctx, fold, seed: int, tmp: Path) -> tuple[float, int]:
    """Seconds and optimizer steps of one replica trained as before, alone on one thread."""
    job = _jobs(ctx, fold, [seed], tmp, "alone")[0]
    t = time.perf_counter()
    fit = fit_classifier(job.model, job.X_fit, job.y_fit, job.X_stop, job.y_stop, job.cfg,
                         job.run_dir, torch.device("cpu"), "bench",
                         eval_final_epoch_only=job.eval_final_epoch_only)
    return time.perf_counter() - t, fit.fit.steps


def together(ctx, fold, seeds, tmp: Path, threads: int) -> tuple[float, int]:
    """Seconds and total optimizer steps of the replicas of `seeds` trained together."""
    jobs = _jobs(ctx, fold, seeds, tmp, f"together{len(seeds)}")
    t = time.perf_counter()
    fits = fit_together(jobs, torch.device("cpu"), "bench", threads=threads)
    return time.perf_counter() - t, sum(f.fit.steps for f in fits)


def kernel_seconds_per_step(ctx, threads: int, batch: int, T: int, F: int,
                            calls: int = 60) -> float:
    """Wall seconds per LSTM forward + backward (one replica's step of kernels) when `threads`
    threads run them side by side: the floor's unit."""
    seed_everything(0)
    lstms = [build_enhanced(ctx, 2, F).encoder for _ in range(threads)]
    xs = [torch.randn(batch, T, F) for _ in range(threads)]

    def run(i: int) -> None:
        for _ in range(calls):
            out = lstms[i](xs[i])
            out.sum().backward()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))  # warm up
        t = time.perf_counter()
        list(pool.map(run, range(threads)))
        return (time.perf_counter() - t) / (calls * threads)


def model_seconds_per_step(ctx, threads: int, r: int, batch: int, T: int, F: int,
                           calls: int = 10) -> float:
    """Wall seconds per replica step of the whole model's kernels (forward + backward of the
    trunks and the batched head, as moola.train.together groups them on `threads` threads), with
    no loop around them: no data loading, clipping, optimizer, evaluation or checkpoints."""
    from moola.models.batched import split_for
    from moola.train.together import _groups

    seed_everything(0)
    models = [build_enhanced(ctx, 2, F) for _ in range(r)]
    split = split_for(models)
    gens = [torch.Generator().manual_seed(i) for i in range(r)]
    xs = [torch.randn(batch, T, F) for _ in range(r)]
    groups = _groups(list(range(r)), threads)

    def run(group: list[int]) -> None:
        for _ in range(calls):
            h = torch.stack([split.trunk(models[i], xs[i]) for i in group])
            split.head([models[i] for i in group], h, [batch] * len(group),
                       [gens[i] for i in group]).sum().backward()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, groups))  # warm up
        t = time.perf_counter()
        list(pool.map(run, groups))
        return (time.perf_counter() - t) / (calls * r)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/synthetic")
    ap.add_argument("--replicas", type=int, nargs="+", default=[5, 15, 30])
    ap.add_argument("--repeats", type=int, default=3, help="seeds for one replica alone")
    ap.add_argument("--chains", action="store_true",
                    help="then run bench/bench_chain.py --standard --alone --repeats 1")
    args = ap.parse_args(argv)
    cfg = load_config(profile="standard", overrides={"run.data": args.data,
                                                     "run.logger": "csv"})
    torch.set_num_threads(cfg.train.torch_threads)
    ds = load_dataset(Path(args.data))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ctx = _Ctx(cfg, ds)
        fold = folds(ctx)[-1]
        threads = replica_threads(cfg.train.replica_threads, torch.device("cpu"))
        base = cfg.run.seed
        alone = [one_alone(ctx, fold, base + 1000 * i, tmp) for i in range(args.repeats)]
        t_one = statistics.median(t for t, _ in alone)
        steps_one = statistics.median(s for _, s in alone)
        T, F = ds.X.shape[1], ds.X.shape[2]
        unit = kernel_seconds_per_step(ctx, threads, cfg.train.batch_size, T, F)
        print(f"data {args.data}: fold {fold.describe()}, T={T}, F={F}, batch "
              f"{cfg.train.batch_size}, {threads} threads, torch {torch.__version__}")
        print(f"one replica alone (median of {args.repeats}): {t_one:.1f} s, "
              f"{steps_one:.0f} steps ({1000 * t_one / steps_one:.1f} ms/step)")
        print(f"LSTM kernels (fwd+bwd, batch {cfg.train.batch_size}) on {threads} threads: "
              f"{1000 * unit:.2f} ms per replica step")
        print(f"{'R':>4} {'together s':>11} {'steps':>7} {'floor s':>8} {'x one':>7} "
              f"{'x floor':>8} {'model s':>8} {'x model':>8} {'s/replica':>10}")
        for r in args.replicas:
            seeds = replica_seeds(base, r)  # the seeds a run of r replicas trains
            t, steps = together(ctx, fold, seeds, tmp, threads)
            floor = steps * unit
            model = steps * model_seconds_per_step(ctx, threads, r, cfg.train.batch_size, T, F)
            print(f"{r:>4} {t:>11.1f} {steps:>7} {floor:>8.1f} {t / t_one:>7.2f} "
                  f"{t / floor:>8.2f} {model:>8.1f} {t / model:>8.2f} {t / r:>10.2f}",
                  flush=True)
    if args.chains:
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_chain

        return bench_chain.main(["--standard", "--alone", "--repeats", "1"])
    return 0


class _Ctx:
    """What classifier_job and folds read of a GateContext: the config and the dataset."""

    def __init__(self, cfg, ds) -> None:
        self.cfg, self.dataset = cfg, ds


if __name__ == "__main__":
    sys.exit(main())
