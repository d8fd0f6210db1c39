"""gate_8_minority_recall: the finetuned model finds the rarest class of the scored windows
(a user gate).

Copy this file into gates_tests/ and it runs after gate 4 like a built-in gate: in the chain's
order, skipped with gate 4's reason when gate 4 fails, recorded in every output, and rerun
alone from the cache with `pytest gates_tests -k gate_8`. docs/WRITE_YOUR_OWN_GATE.md explains
each line.
"""

import numpy as np
from sklearn.metrics import recall_score

from moola.gates import gate, verdict

MIN_RECALL = 0.5  # a threshold of yours (moola's own thresholds live in --gates-config)


@gate("gate_8_minority_recall", after="gate_4_finetune_enhanced")
def test_gate_8_minority_recall(finetuned_model, encoder, dataset):
    """The finetuned model's recall on the class rarest among the scored windows (the ones its
    out-of-fold predictions cover), averaged over seeds, >= MIN_RECALL."""
    y = finetuned_model.y  # the scored windows' labels (out-of-fold, pooled over folds)
    minority = int(np.bincount(y, minlength=len(dataset.classes)).argmin())
    per_seed = [recall_score(y == minority, pred == minority, zero_division=0.0)
                for pred in finetuned_model.pred]  # one row of predictions per seed
    recall = float(np.mean(per_seed))
    name = dataset.classes[minority]
    return verdict(
        recall >= MIN_RECALL,
        f"recall of the minority class '{name}' {recall:.2f} (per seed "
        f"{', '.join(f'{r:.2f}' for r in per_seed)}) vs at least {MIN_RECALL}, on "
        f"{len(y)} scored windows; encoder pretrained for {encoder.epochs_run} epochs",
        metrics={"minority_class": name, "minority_recall": recall,
                 "per_seed_recall": per_seed},
        key_metric={"name": "minority_recall", "value": recall, "threshold": MIN_RECALL,
                    "op": ">="})
