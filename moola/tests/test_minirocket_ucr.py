"""MiniRocketControl reproduces the published MiniRocket accuracy on two bundled UCR datasets.

Dempster, Schmidt & Webb (2021), MiniRocket, Table/supplement: GunPoint 0.993, ItalyPowerDemand
0.969 (mean over resamples; a single default split lands within about a point). The datasets
ship with sktime, so no network is needed. First fit in a fresh environment compiles numba.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from moola.models import MiniRocketControl

PUBLISHED = {"GunPoint": (0.993, 0.98), "ItalyPowerDemand": (0.969, 0.95)}  # (paper, floor)


def load_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """UCR split as (n, T, F) windows and labels."""
    from sktime.datasets import load_UCR_UEA_dataset

    X, y = load_UCR_UEA_dataset(name, split=split, return_X_y=True, return_type="numpy3D")
    return np.asarray(X).transpose(0, 2, 1), np.asarray(y)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_reproduces_published_accuracy(name):
    paper, floor = PUBLISHED[name]
    X_train, y_train = load_split(name, "train")
    X_test, y_test = load_split(name, "test")
    t0 = time.perf_counter()
    model = MiniRocketControl(seed=0).fit(X_train, y_train)
    acc = float(np.mean(model.predict(X_test) == y_test))
    elapsed = time.perf_counter() - t0
    print(f"{name}: test accuracy {acc:.4f} (paper {paper}), fit+predict {elapsed:.1f}s")
    assert acc >= floor, (
        f"MiniRocketControl on {name}: test accuracy {acc:.4f} < {floor} (paper {paper}); "
        "check the transform (channels-first input) and the ridge alphas"
    )
