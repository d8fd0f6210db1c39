"""Benchmark: MAE pretraining through the moola harness vs a plain PyTorch loop.

Not a test. Both runs use the same data split, model (same seed), DataLoader, masks, step (the
batch's ``pretrain.shards`` shards side by side on the cores; ``--shards 1`` for one pass), AdamW
and gradient clipping, and both score the held-out windows once per epoch; the harness adds what it
is for (status file, metrics.csv, checkpoints every epoch, evaluation on a model snapshot in a
worker thread with a time limit). The ratio harness / plain is measured in the same process.

    .venv/bin/python bench/bench_pretrain.py --epochs 1
    .venv/bin/python bench/bench_pretrain.py --epochs 1 --repeats 3 --hidden 32 --batch-size 256
    .venv/bin/python bench/bench_pretrain.py --epochs 1 --shards 1   # one pass per batch

Data: seed-scale synthetic unlabeled windows (11,873 x 105 x 4) from moola.data.synth, window
z-scored; ``--data DIR`` reads a dataset directory instead.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moola.config import load_config  # noqa: E402
from moola.pretrain.mae import MAEModule, MaskedAutoencoder, encoder_config_for, pretrain_encoder, split_unlabeled, stop_and_score  # noqa: E402
from moola.train.device import worker_threads  # noqa: E402


def unlabeled_windows(data: str | None, n: int, seed: int) -> np.ndarray:
    """(n, 105, 4) window-z-scored float32: synthetic, or the unlabeled pool of a dataset dir."""
    from moola.data.normalize import normalize

    if data:
        from moola.data import load_dataset

        X = load_dataset(data, max_unlabeled=n).X_unlabeled
        return np.ascontiguousarray(X, dtype=np.float32)
    from moola.data.synth import make_synthetic

    _, unl, _, _ = make_synthetic(n_labeled=98, n_unlabeled=n, seed=seed)
    flat = unl.column("features").combine_chunks().flatten().flatten().to_numpy()
    return normalize(flat.reshape(n, -1, 4).astype(np.float32), "window_zscore")


def plain_loop(X: np.ndarray, cfg, device: torch.device) -> float:
    """The same training in a bare loop (no status / checkpoint / CSV); returns seconds."""
    from moola.train import seed_everything

    train_idx, heldout_idx = split_unlabeled(len(X), cfg.pretrain.val_fraction)
    stop_idx, _ = stop_and_score(heldout_idx)  # the harness validates on the stopping half
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    model = MaskedAutoencoder(encoder_config_for(cfg, X.shape[2])).to(device)
    # the same step as the harness: the batch's shards side by side on the cores
    module = MAEModule(model, cfg, X[stop_idx], seed=cfg.run.seed,
                       threads=worker_threads(device),
                       shards=cfg.pretrain.shards if device.type == "cpu" else 1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X[train_idx])),
        batch_size=cfg.pretrain.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(cfg.run.seed), num_workers=cfg.run.num_workers,
    )
    opt = module.configure_optimizer()
    intra_op = torch.get_num_threads()
    if module.shard_threads > 1:
        torch.set_num_threads(1)  # as pretrain_encoder does while shards run on threads
    t0 = time.perf_counter()
    try:
        for epoch in range(cfg.pretrain.max_epochs):
            model.train()
            module.on_epoch_start(epoch, opt)
            for batch in loader:
                opt.zero_grad(set_to_none=True)
                module.forward_backward(batch, device)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            module.validation_metrics(model, device)
    finally:
        module.close()
        torch.set_num_threads(intra_op)
    return time.perf_counter() - t0


def harness(X: np.ndarray, cfg, device: torch.device, workdir: Path) -> float:
    """pretrain_encoder with a status file, CSV log and checkpoints; returns seconds."""
    status = None
    try:
        from moola.report.status import StatusWriter

        status = StatusWriter(workdir / "status.json", "bench", "gate_3_pretrain_bilstm")
    except ImportError:  # the report package is optional for this benchmark
        print("note: moola.report.status not importable; harness runs without a status file")
    t0 = time.perf_counter()
    pretrain_encoder(X, cfg, workdir / "run", device, status=status, resume=False)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each; the median is reported")
    ap.add_argument("--n-unlabeled", type=int, default=11873)
    ap.add_argument("--data", default=None, help="dataset directory instead of synthetic data")
    ap.add_argument("--hidden", type=int, default=None, help="override model.hidden")
    ap.add_argument("--layers", type=int, default=None, help="override model.layers")
    ap.add_argument("--batch-size", type=int, default=None, help="override pretrain.batch_size")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--shards", type=int, default=None,
                    help="override pretrain.shards (1 = one pass over each batch, as before)")
    ap.add_argument("--only", choices=("both", "harness", "plain"), default="both")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    over = {"pretrain.max_epochs": args.epochs, "pretrain.early_stop_patience": args.epochs + 1}
    for key, val in (("model.hidden", args.hidden), ("model.layers", args.layers), ("pretrain.batch_size", args.batch_size),
                     ("pretrain.shards", args.shards)):
        if val is not None:
            over[key] = val
    cfg = load_config(args.profile, overrides=over)
    device = torch.device("cpu")
    t0 = time.perf_counter()
    X = unlabeled_windows(args.data, args.n_unlabeled, cfg.run.seed)
    n_train = len(split_unlabeled(len(X), cfg.pretrain.val_fraction)[0])
    print(f"data: {X.shape} in {time.perf_counter() - t0:.1f}s; train windows {n_train}; "
          f"torch threads {torch.get_num_threads()}; hidden {cfg.model.hidden} x {cfg.model.layers} layer(s), "
          f"batch {cfg.pretrain.batch_size} in {cfg.pretrain.shards} shard(s), {cfg.pretrain.mask_strategy} masks, epochs {args.epochs}")

    times: dict[str, list[float]] = {"harness": [], "plain": []}
    cpu: dict[str, list[float]] = {"harness": [], "plain": []}
    for r in range(args.repeats):
        order = ("plain", "harness") if r % 2 else ("harness", "plain")  # alternate: no warm-up bias
        for name in order:
            if args.only not in ("both", name):
                continue
            c0 = time.process_time()
            with tempfile.TemporaryDirectory() as tmp:
                secs = harness(X, cfg, device, Path(tmp)) if name == "harness" else plain_loop(X, cfg, device)
            times[name].append(secs)
            cpu[name].append(time.process_time() - c0)
            print(f"  repeat {r + 1}: {name:8s} {secs:7.2f}s wall, {cpu[name][-1]:7.2f}s cpu")

    print()
    # wall time is what a user waits for; CPU time shows contention (other jobs on the cores)
    print(f"{'run':10s} {'wall (s)':>10s} {'cpu (s)':>9s} {'windows/s':>10s} {'s/epoch':>9s}")
    med = {k: statistics.median(v) for k, v in times.items() if v}
    for name, secs in med.items():
        print(f"{name:10s} {secs:10.2f} {statistics.median(cpu[name]):9.2f} "
              f"{n_train * args.epochs / secs:10.0f} {secs / args.epochs:9.2f}")
    if len(med) == 2:
        print(f"ratio harness/plain: {med['harness'] / med['plain']:.3f} (median of {args.repeats})")
    full = load_config(args.profile).pretrain.max_epochs
    per_epoch = med.get("harness", med.get("plain")) / args.epochs
    print(f"projected {args.profile} pretraining ({full} epochs, no early stop): {per_epoch * full:.0f}s "
          f"({'under' if per_epoch * full < 180 else 'OVER'} the 3-minute budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
