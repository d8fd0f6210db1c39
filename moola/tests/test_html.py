"""`moola report`: one self-contained, escaped HTML page for the newest run."""

from __future__ import annotations

import base64
import re

from moola.report.html import build_report, report_main, write_report
from moola.report.results import append_records, results_path

# a 1x1 PNG; the page must embed the bytes, not link the file
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

CLS_METRICS = {
    "n": 20, "accuracy": 0.8, "balanced_accuracy": 0.81, "macro_f1": 0.78, "weighted_f1": 0.807,
    "per_class": {"consolidation": {"precision": 0.92, "recall": 0.79, "f1": 0.85, "support": 14},
                  "retracement": {"precision": 0.62, "recall": 0.83, "f1": 0.71, "support": 6}},
    "confusion_matrix": [[11, 3], [1, 5]],
    "majority_baseline": {"class": "consolidation", "share": 0.7, "accuracy": 0.7, "macro_f1": 0.4118,
                          "weighted_f1": 0.576, "balanced_accuracy": 0.5},
    "predicted_distribution": {"consolidation": 12, "retracement": 8},
    "degenerate": False, "chance_balanced_accuracy": 0.5,
    "ci": {"accuracy": [0.62, 0.95], "balanced_accuracy": [0.63, 0.97], "macro_f1": [0.598, 0.949]},
}


def fill(reports, run_id="run-2"):
    append_records(results_path(reports), [
        {"run_id": "run-1", "gate": "gate_0_env", "status": "failed", "reason": "OLD RUN",
         "timestamp": "2026-01-01T00:00:00+00:00"},
        {"run_id": run_id, "gate": "gate_0_env", "status": "passed", "reason": "data valid",
         "duration_s": 0.8, "timestamp": "2026-01-25T19:40:00+00:00"},
        {"run_id": run_id, "gate": "gate_1_smoke_enhanced", "status": "passed", "model": "EnhancedSimpleLSTM",
         "reason": "macro-F1 0.78 beats the <majority> baseline & chance", "duration_s": 14.2,
         "timestamp": "2026-01-25T19:41:00+00:00", "metrics": CLS_METRICS,
         "key_metric": {"name": "balanced_accuracy_ci_low", "value": 0.63, "threshold": 0.5, "op": ">"},
         "comparison": {"delta": 0.04, "ci": [-0.1, 0.2], "significant": False},
         "config": {"train": {"max_epochs": 25}}, "artifacts": {"model": "cache/x.pt"}},
        {"run_id": run_id, "gate": "gate_3_pretrain_bilstm", "status": "failed",
         "reason": "probe macro-F1 0.41 < 0.55", "timestamp": "2026-01-25T19:50:00+00:00",
         "metrics": {"masked_mse": 0.31, "probe": dict(CLS_METRICS, macro_f1=0.41)}},
        {"run_id": run_id, "gate": "gate_4_finetune_enhanced", "status": "skipped",
         "reason": "upstream gate_3_pretrain_bilstm failed", "timestamp": "2026-01-25T19:51:00+00:00"},
    ])


def test_page_has_summary_details_and_embedded_pictures(tmp_path):
    reports = tmp_path / "reports"
    fill(reports)
    gate_dir = reports / "runs" / "run-2" / "gate_1_smoke_enhanced"
    gate_dir.mkdir(parents=True)
    (gate_dir / "confusion_matrix.png").write_bytes(TINY_PNG)
    (gate_dir / "notes.txt").write_text("not a picture")

    page = build_report(reports)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "run-2" in page and "OLD RUN" not in page  # newest run only
    # summary: gate, status colour, key metric vs threshold, reason, duration
    summary = page.split("<table>", 1)[1].split("</table>", 1)[0]
    assert summary.index("gate_0_env") < summary.index("gate_1_smoke_enhanced") < summary.index(
        "gate_3_pretrain_bilstm") < summary.index("gate_4_finetune_enhanced")
    assert "balanced_accuracy_ci_low 0.630 &gt; 0.500" in summary
    assert "probe.macro_f1 0.410" in summary  # fallback: the nested macro-F1, named
    assert "#cf222e" in summary and "#1a7f37" in summary  # failed red, passed green
    assert "14 s" in summary
    # details: macro-F1 with CI, majority baseline, predicted distribution, comparison
    assert "[0.598, 0.949]" in page and "0.412" in page
    assert "always answer <b>consolidation</b>" in page
    assert "Predicted-class distribution" in page and "60%" in page
    assert "Comparison" in page and "[-0.100, 0.200]" in page
    # pictures: only the PNG, embedded as base64
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(i) for i in imgs] == [TINY_PNG]
    assert "notes.txt" not in page


def test_all_text_is_escaped(tmp_path):
    append_records(results_path(tmp_path), [
        {"run_id": "<script>alert(1)</script>", "gate": "gate_0_<b>", "status": "passed",
         "reason": 'x <img src=x onerror="alert(2)"> & y', "metrics": {"<k>": "<v>"},
         "model": "<m>"},
    ])
    page = build_report(tmp_path)
    assert "<script>" not in page and "<img src=x" not in page and "<k>" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt; &amp; y" in page


def test_missing_fields_and_no_pictures(tmp_path):
    append_records(results_path(tmp_path), [
        {"run_id": "r", "gate": "gate_0_env", "status": "passed"},
        {"run_id": "r", "gate": "gate_1_smoke_enhanced", "status": "failed",
         "metrics": {"macro_f1": None, "ci": None, "majority_baseline": None,
                     "predicted_distribution": {}, "confusion_matrix": [[1]]},
         "comparison": "n/a", "duration_s": None, "key_metric": {"name": "x", "value": None}},
    ])
    page = build_report(tmp_path)
    assert "gate_1_smoke_enhanced" in page and "no metrics recorded" in page
    assert "data:image/png" not in page


def test_empty_or_missing_log(tmp_path):
    assert "No results for this run" in build_report(tmp_path)


def test_report_main_writes_the_file(tmp_path, capsys):
    fill(tmp_path)
    assert report_main(["--reports", str(tmp_path)]) == 0
    out = tmp_path / "report.html"
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert str(out) in capsys.readouterr().out
    custom = write_report(tmp_path, tmp_path / "sub" / "r.html", run_id="run-1")
    assert "OLD RUN" in custom.read_text(encoding="utf-8")
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_report_main_without_a_log_says_what_to_do(tmp_path, capsys):
    assert report_main(["--reports", str(tmp_path / "none")]) == 2
    assert "run the gates first" in capsys.readouterr().err
