"""Model out: a run's approved models exported to ``reports/runs/<run_id>/models/<name>/``,
and `moola predict` applying one (or the calibrated ensemble) to new windows.

* :mod:`moola.export.exporter`: which models are exported, when, and their cards;
* :mod:`moola.export.bundle`: the directory layout, atomic writing, :func:`load_model`;
* :mod:`moola.models.architecture`: rebuilding a module from its card;
* :mod:`moola.export.predict`: the `moola predict` command.

The refit itself (the recipe trained on every development row) is cached work:
:mod:`moola.gates.refit`. docs/MODEL_OUT.md says it all for users.
"""

from moola.export.bundle import ExportedEnsemble, ExportedModel, ModelDirError, load_model

__all__ = ["ExportedEnsemble", "ExportedModel", "ModelDirError", "load_model"]
