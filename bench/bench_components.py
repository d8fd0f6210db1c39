"""Benchmark pieces of the chain on the synthetic seed-scale data, printing a table.

    .venv/bin/python bench/bench_components.py [--repeats 5] [--epochs 20] [--threads 1]

* harness overhead: gate 1's classifier trained through moola (`fit_classifier`: status file,
  metrics.csv, checkpoints, per-epoch evaluation of a snapshot in a worker thread) vs the same
  model, batches, epochs and per-epoch validation pass in a plain PyTorch loop; ratio taken in
  the same run;
* the same classifier through moola with each batch in --shards shards on a thread per core
  (``train.refit_shards``: how the exported model's refit trains, moola.train.shards), next to
  one pass;
* the MiniRocket control's fit + predict time on the 98-window labeled set (numba compiled
  first, outside the timing).
Medians of --repeats. Not a test: read the ratios, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from moola.config import load_config
from moola.data import load_dataset
from moola.data.synth import generate_synthetic
from moola.gates.context import GateContext
from moola.gates.work import build_enhanced
from moola.models import MiniRocketControl
from moola.train import fit_classifier, seed_everything
from moola.train.classify import inverse_frequency_weights


def plain_loop(model, X, y, Xv, yv, epochs: int, batch_size: int, lr: float, wd: float) -> None:
    """The same optimisation and per-epoch validation pass, without the harness (no status
    file, CSV, checkpoints, snapshot copy, evaluation thread or early-stopping bookkeeping)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    w = torch.as_tensor(inverse_frequency_weights(y, 2), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=w)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True,
                                     generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(epochs):
        for xb, yb in dl:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():  # the validation a plain loop also needs to pick its best epoch
            loss_fn(model(torch.from_numpy(Xv)), torch.from_numpy(yv))
        model.train()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shards", type=int, default=2, help="shards of the sharded row")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_synthetic(tmp / "data", n_unlabeled=200)
        ds = load_dataset(tmp / "data")
        Xtr, ytr = ds.X[ds.train_idx], ds.y[ds.train_idx]
        Xva, yva = ds.X[ds.val_idx], ds.y[ds.val_idx]
        # a fixed budget: no early stopping, so both loops run exactly --epochs epochs
        cfg = load_config("standard", overrides={
            "train.max_epochs": args.epochs, "train.min_epochs": args.epochs,
            "train.early_stop_patience": args.epochs + 1, "train.min_steps": 0,
            "run.torch_threads": args.threads})
        ctx = GateContext(cfg=cfg, run_id="bench", root=tmp)
        ctx.__dict__["dataset"] = ds
        harness, plain, sharded = [], [], []
        for i in range(args.repeats):
            seed_everything(17, False)
            m = build_enhanced(ctx, 2, ds.X.shape[2])
            t0 = time.perf_counter()
            fit_classifier(m, Xtr, ytr, Xva, yva, cfg, tmp / f"run{i}", torch.device("cpu"),
                           "bench", status=ctx.status)
            harness.append(time.perf_counter() - t0)
            seed_everything(17, False)
            m = build_enhanced(ctx, 2, ds.X.shape[2])
            t0 = time.perf_counter()
            plain_loop(m, Xtr, ytr, Xva, yva, args.epochs, cfg.train.batch_size, cfg.train.lr,
                       cfg.train.weight_decay)
            plain.append(time.perf_counter() - t0)
            seed_everything(17, False)
            m = build_enhanced(ctx, 2, ds.X.shape[2])
            t0 = time.perf_counter()
            fit_classifier(m, Xtr, ytr, Xva, yva, cfg, tmp / f"shards{i}", torch.device("cpu"),
                           "bench", status=ctx.status, shards=args.shards)
            sharded.append(time.perf_counter() - t0)
        MiniRocketControl(seed=0).fit(Xtr, ytr).predict(Xva)  # compile numba outside timing
        mr = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            MiniRocketControl(seed=0).fit(Xtr, ytr).predict(Xva)
            mr.append(time.perf_counter() - t0)
    stats_s = _metrics_seconds(args.repeats)
    h, p = statistics.median(harness), statistics.median(plain)
    ratios = [a / b for a, b in zip(harness, plain)]
    print(f"\n{args.repeats} repeats, {args.epochs} epochs, {len(Xtr)} train windows, "
          f"torch threads {args.threads}\n")
    print(f"{'what':<52} {'median s':>9}")
    print(f"{'gate-1 classifier through moola (fit_classifier)':<52} {h:9.2f}")
    print(f"{'same model/batches/epochs, plain PyTorch loop':<52} {p:9.2f}")
    print(f"{'harness / plain (median of per-repeat ratios)':<52} "
          f"{statistics.median(ratios):9.3f}")
    print(f"{f'same through moola, {args.shards} shards on the cores':<52} "
          f"{statistics.median(sharded):9.2f}")
    print(f"{'one pass / shards (median of per-repeat ratios)':<52} "
          f"{statistics.median(a / b for a, b in zip(harness, sharded)):9.3f}")
    print(f"{'MiniRocket fit+predict, 78 train / 20 val windows':<52} {statistics.median(mr):9.2f}")
    print(f"{'metrics with 3 CIs + a paired CI, n 200, 1000 resamples':<52} {stats_s:9.3f}")
    return 0


def _metrics_seconds(repeats: int) -> float:
    """Median seconds of what a classifier verdict computes on 200 scored windows: the
    classification metrics with their three bootstrap CIs, and one paired comparison."""
    from moola.metrics import classification_metrics, paired_delta_ci

    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    classification_metrics(y, pred, 2, n_bootstrap=10)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        classification_metrics(y, pred, 2, n_bootstrap=1000)
        paired_delta_ci(y, pred, y, n_bootstrap=1000)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
