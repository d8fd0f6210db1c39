"""Write examples/bars.csv and examples/labels.csv: the worked example of docs/BRING_YOUR_OWN_DATA.md.

    python examples/make_example_csv.py [OUT_DIR]   # same files every time (fixed seed)

6,400 five-minute bars of one instrument (a random walk near 100), cut into 100 stretches of 64
bars. Somewhere inside each stretch, for 24-48 bars, the market does one of two things, and an
annotator labeled the stretch by it:

* trend - returns carry momentum (each bar's return leans on the previous one, AR(1) +0.3) on a
  steady drift up or down (0.4 of a bar's volatility per bar), so the price moves away;
* chop - returns reverse (AR(1) -0.6) around no drift, so the price saws back and forth.

45 stretches are trend, 55 chop, in random order.

Both kinds have the same bar volatility, so telling them apart takes the shape of the path, not
its size. labels.csv keys each label by the stretch's first bar (start_time) and says where
inside the 64-bar window the episode lies (expansion_start / expansion_end, bar offsets).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 2024
N_STRETCHES = 100
STRETCH = 64  # bars per labeled window (`--window 64`)
SIGMA = 0.001  # per-bar log-return volatility (0.1%)


def episode_returns(rng: np.random.Generator, kind: str, length: int) -> np.ndarray:
    """Log returns of one episode: AR(1) innovations with the kind's autocorrelation and drift."""
    phi, drift = (0.3, rng.choice([-1, 1]) * 0.4 * SIGMA) if kind == "trend" else (-0.6, 0.0)
    eps = rng.normal(0, SIGMA * np.sqrt(1 - phi**2), length)  # same stationary volatility for both
    r = np.empty(length)
    prev = 0.0
    for t in range(length):
        prev = phi * prev + eps[t]
        r[t] = prev
    return r + drift


def main(out: Path = HERE) -> None:
    rng = np.random.default_rng(SEED)
    n_trend = round(0.45 * N_STRETCHES)  # a fixed class balance, in random order
    kinds = rng.permutation(["trend"] * n_trend + ["chop"] * (N_STRETCHES - n_trend))
    returns, labels = [], []
    for k, kind in enumerate(kinds.tolist()):
        r = rng.normal(0, SIGMA, STRETCH)  # neutral random walk around the episode
        length = int(rng.integers(24, 49))
        start = int(rng.integers(4, STRETCH - length - 4))
        r[start:start + length] = episode_returns(rng, kind, length)
        returns.append(r)
        labels.append((k * STRETCH, kind, start, start + length - 1))
    r = np.concatenate(returns)
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0, 0.5 * SIGMA, (2, len(r))))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    times = np.datetime64("2024-03-04T00:00") + np.arange(len(r)) * np.timedelta64(5, "m")

    def stamp(t) -> str:
        return str(t).replace("T", " ")

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bars.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "open", "high", "low", "close"])
        for row in zip(times, open_, high, low, close):
            w.writerow([stamp(row[0]), *(f"{v:.3f}" for v in row[1:])])
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["start_time", "label", "expansion_start", "expansion_end"])
        for first, kind, s, e in labels:
            w.writerow([stamp(times[first]), kind, s, e])
    print(f"wrote {out / 'bars.csv'} ({len(r)} bars) and {out / 'labels.csv'} ({len(labels)} labels)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
