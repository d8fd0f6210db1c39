"""Exporting gate 2's MiniRocket control, and loading it back, without pickle.

When the decision recommends the control (or its gate approves it), a run exports it like the
deep models: the control refitted on every development row (train + val rows of the split),
with a card. sktime's fitted MiniRocket is fixed random kernels plus per-kernel dilations and
biases (its ``parameters``: a handful of integer and float arrays); the ridge classifier is a
coefficient matrix and an intercept; the scaler a mean and a scale. All of it is stored as
plain arrays in ``minirocket.npz`` (read with ``allow_pickle=False``) and the transform is
rebuilt by giving a fresh sktime transformer those parameters, so the features are sktime's own
(a test checks they equal the fitted transformer's) and nothing a user loads can run code::

    <name>/minirocket.npz   the transform's parameters, scaler mean/scale, ridge coef/intercept
    <name>/card.json        kind "minirocket"; classes, features, window length, normalisation
    <name>/card.md          the same for people
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from moola.export.bundle import CARD, ModelDirError, check_windows, publish, read_card

ARRAYS = "minirocket.npz"
KIND = "minirocket"


def save_control(ctrl: Any, out: Path) -> dict[str, Any]:
    """Write a fitted :class:`moola.models.MiniRocketControl` into `out` as plain arrays;
    returns what the card says about it."""
    from moola.io_utils import atomic_save_npz, file_sha256

    t = ctrl.transform_
    arrays = {f"param_{i}": np.asarray(p) for i, p in enumerate(t.parameters)}
    arrays.update(scaler_mean=ctrl.scaler_.mean_, scaler_scale=ctrl.scaler_.scale_,
                  coef=np.atleast_2d(ctrl.classifier_.coef_),
                  intercept=np.atleast_1d(ctrl.classifier_.intercept_),
                  classes=np.asarray(ctrl.classes_, dtype=np.int64))
    atomic_save_npz(out / ARRAYS, **arrays)
    return {"transform": type(t).__name__, "num_kernels": int(t.num_kernels),
            "num_features": int(arrays["coef"].shape[1]), "seed": int(ctrl.seed),
            "ridge_alpha": float(ctrl.classifier_.alpha_),
            "file": ARRAYS, "sha256": file_sha256(out / ARRAYS),
            "load": "numpy.load(path, allow_pickle=False): sktime MiniRocket parameters, "
                    "StandardScaler mean/scale, RidgeClassifierCV coef/intercept"}


class ExportedControl:
    """An exported MiniRocket control: :meth:`predict_proba` takes raw windows (n, T, F),
    normalises them as in training, computes sktime's MiniRocket features with the saved
    parameters and applies the saved scaler and ridge classifier (softmax of its scores, as
    gate 2 scored it)."""

    def __init__(self, directory: str | Path):
        from sktime.transformations.panel.rocket import MiniRocket, MiniRocketMultivariate

        self.directory = Path(directory)
        self.card = read_card(self.directory)
        if self.card["kind"] != KIND:
            raise ModelDirError(f"{self.directory / CARD}: kind {self.card['kind']!r}; load it "
                                f"with moola.export.load_model")
        path = self.directory / ARRAYS
        if not path.is_file():
            raise ModelDirError(f"{path}: missing; copy the whole model directory")
        from moola.io_utils import file_sha256

        want = (self.card.get("minirocket") or {}).get("sha256")
        if want and file_sha256(path) != want:
            raise ModelDirError(f"{path}: its SHA-256 differs from the one {CARD} records (the "
                                f"file was changed or truncated); copy it again")
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise ModelDirError(f"{path}: cannot be read as plain arrays ({exc})") from None
        info = self.card["minirocket"]
        cls = MiniRocket if info["transform"] == "MiniRocket" else MiniRocketMultivariate
        t = cls(num_kernels=info["num_kernels"], random_state=info["seed"], n_jobs=1)
        n_params = len([k for k in a if k.startswith("param_")])
        t.parameters = tuple(a[f"param_{i}"] for i in range(n_params))
        t.num_kernels_ = (info["num_kernels"] // 84) * 84
        t._is_fitted = True  # sktime's flag: the parameters above are what fit() would set
        self._transform, self._a = t, a

    classes = property(lambda self: list(self.card["classes"]))
    feature_names = property(lambda self: list(self.card["feature_names"]))
    window_length = property(lambda self: int(self.card["window_length"]))
    normalization = property(lambda self: str(self.card["normalization"]["method"]))

    def predict_proba(self, X_raw: np.ndarray) -> np.ndarray:
        """Raw windows (n, T, F) -> class probabilities (n, K), columns in `classes` order."""
        from moola.data.normalize import normalize

        check_windows(X_raw, self.card, str(self.directory))
        X = normalize(X_raw, self.normalization)
        panel = np.ascontiguousarray(np.asarray(X, dtype=np.float64).transpose(0, 2, 1))
        feats = np.asarray(self._transform.transform(panel), dtype=np.float64)
        a = self._a
        feats = (feats - a["scaler_mean"]) / a["scaler_scale"]
        d = feats @ a["coef"].T + a["intercept"]
        if d.shape[1] == 1:  # binary ridge: one score, positive = the second class
            d = np.concatenate([np.zeros_like(d), d], axis=1)
        d = d - d.max(axis=1, keepdims=True)
        e = np.exp(d)
        p = e / e.sum(axis=1, keepdims=True)
        out = np.zeros((len(X), len(self.classes)))
        out[:, a["classes"]] = p  # the classes the refit saw, scattered into all K columns
        return out


def export_control(ctx, verdict, model, final: Path) -> dict[str, Any]:
    """Refit the MiniRocket control on every development row and publish it at `final`;
    returns the gate record's ``model_export`` entry."""
    from moola.export.exporter import _common, card_markdown, estimate, verdict_summary
    from moola.gates.refit import development_rows
    from moola.io_utils import jsonable
    from moola.io_utils import atomic_write_json, atomic_write_text
    from moola.models import MiniRocketControl

    t0 = time.time()
    ds = ctx.dataset
    rows = np.asarray(development_rows(ctx))
    if len(np.unique(ds.y[rows])) < 2:
        return {"path": None, "reason": "not exported: the development rows hold one class"}
    ctrl = MiniRocketControl(seed=ctx.cfg.run.seed).fit(ds.X[rows], ds.y[rows])
    train_acc = float(np.mean(ctrl.predict(ds.X[rows]) == ds.y[rows]))

    def fill(tmp: Path) -> None:
        info = save_control(ctrl, tmp)
        card = jsonable({
            **_common(ctx), "kind": KIND, "name": model.name, "model": model.model,
            "gate": model.gate, "minirocket": info, "verdict": verdict_summary(verdict),
            "estimate": estimate(verdict.metrics, int(len(rows)),
                                 int(len(np.unique(model.fold_of)))),
            "training": {"n_rows": int(len(rows)), "rows": "train + val rows of the split",
                         "seed": int(ctx.cfg.run.seed), "train_acc": train_acc,
                         "what": "sktime MiniRocket features (fixed random kernels) + "
                                 "StandardScaler + RidgeClassifierCV(alphas=logspace(-3, 3, "
                                 "10)), fitted once on every development row"},
            "config": ctx.cfg.to_dict()})
        atomic_write_json(tmp / CARD, card, indent=1, fsync=False)
        atomic_write_text(tmp / "card.md", card_markdown(card), fsync=False)

    out = publish(final, fill)
    return {"path": str(out), "refits": {}, "refit_cache_hit": False,
            "duration_s": round(time.time() - t0, 3)}
