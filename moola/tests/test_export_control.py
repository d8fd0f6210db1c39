"""The MiniRocket control exported without pickle: plain arrays and a card, loaded back into
sktime's own transform, predicting exactly as the fitted control does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moola.data.normalize import normalize
from moola.export.bundle import FORMAT, ModelDirError, load_model
from moola.export.control import ARRAYS, KIND, ExportedControl, save_control
from moola.models import MiniRocketControl


def _card(info: dict, classes: list[str], T: int) -> dict:
    return {"format": FORMAT, "kind": KIND, "name": "control", "model": "MiniRocket",
            "classes": classes, "feature_names": ["open", "high", "low", "close"],
            "window_length": T, "normalization": {"method": "window_zscore", "what": "z"},
            "minirocket": info}


@pytest.mark.parametrize("n_classes", [2, 3])
def test_an_exported_control_predicts_as_the_fitted_one(tmp_path, n_classes):
    rng = np.random.default_rng(n_classes)
    X_raw = rng.normal(100, 5, size=(40, 30, 4))
    y = np.arange(40) % n_classes
    X_raw[y == 1, 10:20] += 10  # something to learn
    X = normalize(X_raw, "window_zscore")
    ctrl = MiniRocketControl(seed=3, num_kernels=840).fit(X, y)
    info = save_control(ctrl, tmp_path)
    classes = [f"c{k}" for k in range(n_classes)]
    (tmp_path / "card.json").write_text(json.dumps(_card(info, classes, 30)))
    with np.load(tmp_path / ARRAYS, allow_pickle=False) as z:  # plain arrays, no pickle
        assert all(z[k].dtype != object for k in z.files)
    loaded = load_model(tmp_path)
    assert isinstance(loaded, ExportedControl) and loaded.classes == classes
    got, want = loaded.predict_proba(X_raw), ctrl.predict_proba(X)
    np.testing.assert_allclose(got, want, atol=1e-6)  # float32 features: rounding only
    assert (got.argmax(axis=1) == ctrl.predict(X)).all()


def test_an_altered_parameter_file_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 30, 4))
    ctrl = MiniRocketControl(seed=1, num_kernels=840).fit(X, np.arange(20) % 2)
    info = save_control(ctrl, tmp_path)
    (tmp_path / "card.json").write_text(json.dumps(_card(info, ["a", "b"], 30)))
    data = (tmp_path / ARRAYS).read_bytes()
    (tmp_path / ARRAYS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelDirError, match="SHA-256 differs"):
        ExportedControl(tmp_path)
