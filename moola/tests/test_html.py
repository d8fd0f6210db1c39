"""`moola report`: one self-contained, escaped HTML page for a run, checked by its structure."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from moola.report.html import UnknownRunError, build_report, report_main, write_report
from moola.report.results import append_records, results_path

CLASSES = ("consolidation", "retracement")


def cls_metrics(f1=0.78, lo=0.598, hi=0.949, n_replicas=1):
    return {
        "n": 20, "n_classes": 2, "accuracy": 0.8, "balanced_accuracy": 0.81, "macro_f1": f1,
        "weighted_f1": 0.807,
        "per_class": {"consolidation": {"precision": 0.92, "recall": 0.79, "f1": 0.85, "support": 14},
                      "retracement": {"precision": 0.62, "recall": 0.83, "f1": 0.71, "support": 6}},
        "confusion_matrix": [[11, 3], [1, 5]],
        "majority_baseline": {"class": "consolidation", "share": 0.7, "accuracy": 0.7,
                              "macro_f1": 0.4118, "weighted_f1": 0.576, "balanced_accuracy": 0.5},
        "predicted_distribution": {"consolidation": 12, "retracement": 8},
        "degenerate": False, "chance_balanced_accuracy": 0.5, "n_replicas": n_replicas,
        "skill_p_value": 0.0004997501249375312,
        "per_replica_macro_f1": [0.7146853146853147, 0.7991071428571428],
        "seeds": [17, 1017], "n_folds": 2,
        "ci": {"accuracy": [0.62, 0.95], "balanced_accuracy": [0.63, 0.97], "macro_f1": [lo, hi]},
    }


CONFIG = {"run": {"profile": "smoke", "data": "fixtures/smoke"},
          "finetune": {"freeze_epochs": 2, "unfreeze_every": 1}, "model": {"layers": 2},
          "gates": {"recon_margin": 0.01, "probe_min_macro_f1": 0.55}}


def fill(reports, run_id="run-2", day="25"):
    """A run of five gates as the gates record them, and an older run of two."""
    ts = f"2026-01-{day}T19:4"
    append_records(results_path(reports), [
        {"run_id": "run-1", "gate": "gate_0_env", "status": "failed", "reason": "OLD RUN",
         "timestamp": "2026-01-01T00:00:00+00:00", "config": CONFIG, "duration_s": 2.0},
        {"run_id": "run-1", "gate": "gate_1_smoke_enhanced", "status": "passed", "reason": "old",
         "timestamp": "2026-01-01T00:01:00+00:00", "metrics": cls_metrics(0.61), "config": CONFIG},
        {"run_id": run_id, "gate": "gate_0_env", "status": "passed", "reason": "data valid",
         "duration_s": 0.8, "timestamp": ts + "0:00+00:00", "config": CONFIG,
         "metrics": {"data": {"classes": {c: 10 for c in CLASSES}}}},
        {"run_id": run_id, "gate": "gate_1_smoke_enhanced", "status": "passed", "model": "EnhancedSimpleLSTM",
         "reason": "macro-F1 0.78 beats the <majority> baseline & chance", "duration_s": 14.2,
         "timestamp": ts + "1:00+00:00", "metrics": cls_metrics(n_replicas=2), "config": CONFIG,
         "key_metric": {"name": "skill_p", "value": 0.0004997, "threshold": 0.01, "op": "<"},
         "artifacts": {"baseline": {"key": "abc", "path": ".moola-cache/baseline/abc"}}},
        {"run_id": run_id, "gate": "gate_3_pretrain_bilstm", "status": "inconclusive",
         "model": "BiLSTM masked autoencoder", "reason": "probe macro-F1 0.71 vs random",
         "timestamp": ts + "2:00+00:00", "config": CONFIG, "duration_s": 30.0,
         "metrics": {"reconstruction": {"interp_mse": 0.12145938673320704,
                                        "mae_mse": 0.12142239783420544, "ratio": 0.99969546},
                     "probe": {"macro_f1": {"encoder": 0.71, "raw": 0.70},
                               "metrics": cls_metrics(0.71, 0.6, 0.8)}},
         "comparison": {"vs_raw": {"delta": -0.00001, "delta_ci": [-0.106, 0.19]}},
         "key_metric": {"name": "probe_macro_f1", "value": 0.71, "threshold": 0.55, "op": ">="}},
        {"run_id": run_id, "gate": "gate_4_finetune_enhanced", "status": "inconclusive",
         "model": "EnhancedSimpleLSTM (pretrained encoder)", "reason": "cannot be told",
         "timestamp": ts + "3:00+00:00", "config": CONFIG, "duration_s": 6.0,
         "metrics": cls_metrics(0.692, 0.569, 0.799, n_replicas=2),
         "comparison": {"reference": "gate_1_smoke_enhanced", "delta": -0.0667,
                        "delta_ci": [-0.1767, 0.018], "baseline_macro_f1": 0.78,
                        "finetuned_macro_f1": 0.692, "min_delta": 0.0, "max_harm": 0.15,
                        "per_seed_outcome": {"17": "inconclusive", "1017": "passed"}},
         "key_metric": {"name": "delta_f1", "value": -0.0667, "threshold": 0.0, "op": ">"}},
        {"run_id": run_id, "gate": "gate_5_augment", "status": "skipped",
         "reason": "upstream gate_4_finetune_enhanced failed", "timestamp": ts + "4:00+00:00"},
    ])


def write_metrics_csv(path, epochs=6, pretraining=False):
    """A metrics.csv in the trainer's layout: epoch rows with losses, F1 or the MSE ratio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["epoch", "step", "train_loss_epoch", "val_loss"] + (
        ["val_ratio"] if pretraining else ["val_macro_f1"])
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for e in range(epochs):
            row = {"epoch": e, "step": 3 * e + 2, "train_loss_epoch": 0.9 - 0.05 * e,
                   "val_loss": (0.1215 - 0.0001 * e) if pretraining else 0.95 - 0.04 * e}
            row["val_ratio" if pretraining else "val_macro_f1"] = (
                row["val_loss"] / 0.1215 if pretraining else 0.4 + 0.06 * e)
            w.writerow(row)


class Page(HTMLParser):
    """The parts of the page a reader meets: sections, figures, reference lines, tables, text."""

    def __init__(self, page):
        super().__init__()
        self.sections, self.figures, self.refs, self.imgs = [], [], [], []
        self.stack, self.text, self.headers = [], [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.stack.append((tag, a))
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "figure":
            self.figures.append((a.get("data-figure"), self._section()))
        if tag == "line" and "ref" in (a.get("class") or "").split():
            self.refs.append((self._section(), self._chart(), a["class"].split()[1], a.get("data-label")))
        if tag == "img":
            self.imgs.append(a)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if not any(t in ("style", "title", "svg") for t, _ in self.stack):
            self.text.append(data)
        if self.stack and self.stack[-1][0] == "th":
            self.headers.append((self._section(), data))

    def _section(self):
        return next((a.get("id") for t, a in reversed(self.stack) if t == "section"), None)

    def _chart(self):
        return next((a.get("data-chart") for t, a in reversed(self.stack) if t == "svg"), None)

    def labels(self, section, kind=None, chart=None):
        return [lbl for s, c, k, lbl in self.refs
                if s == section and (kind is None or k == kind) and (chart is None or c == chart)]


@pytest.fixture
def page(tmp_path):
    reports = tmp_path / "reports"
    fill(reports)
    gate_dirs = reports / "runs" / "run-2"
    write_metrics_csv(gate_dirs / "gate_1_smoke_enhanced" / "metrics.csv")
    write_metrics_csv(gate_dirs / "gate_4_finetune_enhanced" / "metrics.csv")
    write_metrics_csv(gate_dirs / "gate_3_pretrain_bilstm" / "metrics.csv", pretraining=True)
    return build_report(reports)


def test_the_page_has_its_sections_in_order(page):
    p = Page(page)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert p.sections == ["decision", "summary", "models", "history", "g-gate_0_env", "g-gate_1_smoke_enhanced",
                          "g-gate_3_pretrain_bilstm", "g-gate_4_finetune_enhanced", "g-gate_5_augment"]
    assert "OLD RUN" not in page  # the newest run's gates only (the old run is in the history)
    assert not p.imgs  # every chart is inline SVG: the page stands alone


def test_the_models_side_by_side_against_baseline_and_chance(page):
    p = Page(page)
    assert ("models", "models") in p.figures
    rows = re.findall(r'<tr data-gate="([^"]+)">', page)
    assert rows == ["gate_1_smoke_enhanced", "gate_3_pretrain_bilstm", "gate_4_finetune_enhanced"]
    assert p.labels("models", "baseline") == ["majority baseline 0.412"] * 3
    # uniform guessing with class shares .7 and .3: F1 2(.7)(.5)/1.2 and 2(.3)(.5)/.8, mean .479
    assert p.labels("models", "chance") == ["chance 0.479"] * 3
    assert p.labels("models", "threshold") == ["threshold 0.550"]  # gate 3's probe threshold
    assert "[0.569, 0.799]" in page and "linear probe on the BiLSTM masked autoencoder" in page


def test_history_table_and_trend_across_runs(page):
    p = Page(page)
    history = page.split('<section id="history">', 1)[1].split("</section>", 1)[0]
    assert history.index("run-2") < history.index("run-1")  # newest first
    assert ("trend", "history") in p.figures
    assert 'data-label="gate_1_smoke_enhanced"' in history  # one series per model
    assert "0.610" in history and "0.780" in history  # gate 1 in run 1 and run 2
    assert p.labels("history", "baseline") and p.labels("history", "chance")


def test_learning_curves_carry_the_lines_they_are_judged_against(page):
    p = Page(page)
    g4 = "g-gate_4_finetune_enhanced"
    assert ("learning-curves", g4) in p.figures
    f1 = p.labels(g4, chart="macro-f1")
    assert "gate_1_smoke_enhanced: pooled macro-F1 0.780" in f1
    assert "fails if significantly below gate_1_smoke_enhanced − 0.150" in f1
    assert "this gate: pooled out-of-fold macro-F1 0.692" in f1
    assert any(lbl.startswith("majority baseline") for lbl in f1)
    # freeze / unfreeze points (2 epochs frozen, then one of 2 layers per epoch)
    assert p.labels(g4, "schedule", "loss") == [
        "encoder layer 1 of 2 unfreezes (top first) at epoch 3",
        "encoder layer 2 of 2 unfreezes (top first) at epoch 4"]
    assert 'data-label="encoder frozen (epochs 1-2)"' in page
    # pretraining: the interpolation it must beat, the margin and the ratio judged
    g3 = "g-gate_3_pretrain_bilstm"
    assert "linear interpolation MSE 0.1215 (the trivial reconstruction to beat)" in p.labels(g3, "baseline", "loss")
    assert p.labels(g3, "threshold", "recon-ratio") == ["gate threshold: ratio below 0.99"]
    # readable titles with the status, never cut: HTML text, not text in a picture
    assert "Learning curves — gate_4_finetune_enhanced: EnhancedSimpleLSTM (pretrained encoder)" in page
    assert '(inconclusive)</span></figcaption>' in page


def test_numbers_and_dicts_are_written_for_people(page):
    text = " ".join(Page(page).text)
    assert "-0.000" not in text and "+0.000" not in text
    assert not re.search(r"\d\.\d{5,}", text), re.findall(r"\S*\d\.\d{5,}\S*", text)[:5]
    assert "{'" not in text and '{"' not in text and "[[" not in text  # no Python / JSON text
    assert "0.715, 0.799" in text  # per-seed values rounded
    assert "17, 1017" in text  # seeds are not quantities: no "1,017"
    assert "skill_p 0.0005 < 0.010" in text  # a tiny p-value keeps its digits
    assert "0.1215" in text and "0.1214" in text  # the MSEs a gate compares stay apart


def test_class_names_everywhere_gate_3_probe_too(page):
    p = Page(page)
    for section in ("g-gate_1_smoke_enhanced", "g-gate_3_pretrain_bilstm", "g-gate_4_finetune_enhanced"):
        heads = [h for s, h in p.headers if s == section]
        assert heads.count("consolidation") >= 1 and heads.count("retracement") >= 1, section
    assert "Confusion matrix — gate_3_pretrain_bilstm: BiLSTM masked autoencoder (inconclusive) › probe › metrics" in page
    assert "Confusion matrix — gate_4_finetune_enhanced: EnhancedSimpleLSTM (pretrained encoder) (inconclusive): 20 predictions" in page
    assert "class 0" not in page


def test_all_text_is_escaped(tmp_path):
    append_records(results_path(tmp_path), [
        {"run_id": "<script>alert(1)</script>", "gate": "gate_0_<b>", "status": "passed",
         "reason": 'x <img src=x onerror="alert(2)"> & y', "metrics": {"<k>": "<v>"},
         "model": "<m>"},
    ])
    page = build_report(tmp_path)
    assert "<script>" not in page and "<img src=x" not in page and "<k>" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt; &amp; y" in page


def test_missing_fields_never_break_the_page(tmp_path):
    append_records(results_path(tmp_path), [
        {"run_id": "r", "gate": "gate_0_env", "status": "passed"},
        {"run_id": "r", "gate": "gate_1_smoke_enhanced", "status": "failed",
         "metrics": {"macro_f1": None, "ci": None, "majority_baseline": None,
                     "predicted_distribution": {}, "confusion_matrix": [[1]]},
         "comparison": "n/a", "duration_s": None, "key_metric": {"name": "x", "value": None}},
    ])
    (tmp_path / "runs" / "r" / "gate_1_smoke_enhanced").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "gate_1_smoke_enhanced" / "metrics.csv").write_text("epoch,step\n")
    page = build_report(tmp_path)
    assert "gate_1_smoke_enhanced" in page and "no metrics recorded" in page
    assert "no classifier scored in this run" in page and "one run in the log" in page


def test_empty_log(tmp_path):
    assert "No results in" in build_report(tmp_path)


def test_report_main_writes_the_file(tmp_path, capsys):
    fill(tmp_path)
    assert report_main(["--reports", str(tmp_path)]) == 0
    out = tmp_path / "report.html"
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert str(out) in capsys.readouterr().out
    custom = write_report(tmp_path, tmp_path / "sub" / "r.html", run_id="run-1")
    assert "OLD RUN" in custom.read_text(encoding="utf-8")
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_an_unknown_run_id_is_an_error_that_lists_the_runs_and_keeps_the_page(tmp_path):
    fill(tmp_path)
    page = tmp_path / "report.html"
    page.write_text("the page of an earlier report")
    before = os.stat(page).st_mtime_ns
    out = subprocess.run([sys.executable, "-m", "moola.cli", "report", "--reports", str(tmp_path),
                          "--run-id", "bogus"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no run 'bogus'" in out.stderr and "newest first" in out.stderr
    assert out.stderr.index("run-2") < out.stderr.index("run-1")
    assert "smoke" in out.stderr and "1 passed" in out.stderr  # when and how each run went
    assert page.read_text() == "the page of an earlier report" and os.stat(page).st_mtime_ns == before
    with pytest.raises(UnknownRunError):
        build_report(tmp_path, "bogus")


def test_report_main_without_results_says_what_to_do(tmp_path, capsys):
    assert report_main(["--reports", str(tmp_path / "none")]) == 2
    assert "run the gates first" in capsys.readouterr().err
    results_path(tmp_path).write_text("")
    assert report_main(["--reports", str(tmp_path)]) == 2
    assert "no results in the log" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def _decision_record(run_id: str, recommended, data: str = "data/a") -> dict:
    steps = {"pretraining": {"delta": 0.05, "delta_ci": [-0.02, 0.12], "outcome": "inconclusive",
                             "new": "finetuned", "reference": "random_init", "what": "w",
                             "text": "delta +0.050"},
             "MiniRocket": {"delta": 0.19, "delta_ci": [0.09, 0.28], "outcome": "helped",
                            "new": "control", "reference": "baseline", "what": "w",
                            "text": "delta +0.190"}}
    metrics = {"recommended": recommended, "indistinguishable": [recommended, "baseline"]
               if recommended else [], "steps": steps,
               "expected": {"macro_f1": 0.967, "macro_f1_ci": [0.916, 1.0], "n_windows": 60,
                            "n_seeds": 1, "ci_level": 0.95},
               "candidates": {"control": {"eligible": bool(recommended), "model": "MiniRocket",
                                          "why": "eligible"},
                              "augmented": {"eligible": False, "why": "significantly worse"}},
               "method": "MCS", "loss": "class-balanced"}
    return {"run_id": run_id, "gate": "decision", "timestamp": "2026-01-25T19:44:00+00:00",
            "status": "passed" if recommended else "failed",
            "reason": "deploy control" if recommended else "deploy nothing: no skill",
            "metrics": metrics, "config": {"run": {"profile": "smoke", "data": data}},
            "artifacts": {}, "duration_s": 0.5}


def test_the_decision_comes_first_with_a_forest_plot_of_the_steps(tmp_path):
    reports = tmp_path / "reports"
    append_records(results_path(reports), [_decision_record("r1", "control")])
    page = build_report(reports)
    p = Page(page)
    assert p.sections[0] == "decision"
    assert page.index("Deploy this") < page.index('id="summary"')
    assert "<strong>control</strong>" in page and "0.967" in page
    assert "Not eligible: <b>augmented</b>: significantly worse" in page
    assert 'data-figure="forest"' in page
    assert 'data-step="pretraining"' in page and 'data-step="MiniRocket"' in page
    assert "not exported in this run" in page  # no export path recorded: no card link


def test_deploy_nothing_and_the_history_is_grouped_by_dataset(tmp_path):
    reports = tmp_path / "reports"
    append_records(results_path(reports), [_decision_record("r1", None, "data/a"),
                                           _decision_record("r2", None, "data/b")])
    page = build_report(reports, run_id="r1")
    assert "Deploy nothing." in page and "deploy nothing: no skill" in page
    groups = re.findall(r'<h3 data-dataset="([^"]+)"', page)
    assert groups == ["data/a", "data/b"]  # the current run's dataset first
