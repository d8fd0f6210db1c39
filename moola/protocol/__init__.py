"""The evaluation protocol: walk-forward folds, replicas (seed x fold) and pooled predictions.

See docs/JUDGING.md ("How moola judges") for why each part exists.
"""

from moola.protocol.folds import Fold, folds_for_dataset, walk_forward_folds

__all__ = ["Fold", "folds_for_dataset", "walk_forward_folds"]
