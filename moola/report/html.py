"""``moola report``: one self-contained HTML page for the latest run in the results log.

The page holds the summary table (gate, status, key metric vs threshold, reason, duration), then
per gate its verdict details (metrics with confidence intervals, majority baseline,
predicted-class distribution, per-class scores, confusion matrix, comparison, artifacts, config)
and the pictures found under ``reports/runs/<run_id>/<gate>/*.png``, embedded as base64, so the
file can be copied anywhere (a laptop after a sync) and opened without the reports directory.

Every piece of text is escaped; every field may be missing.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import json
import sys
from pathlib import Path
from typing import Any

from moola.io_utils import atomic_write_text
from moola.report.results import (
    gate_sort_key,
    latest_by_gate,
    latest_run_id,
    read_records,
    results_path,
)
from moola.report.watch import DASH, human_duration, num

MAX_PNG_BYTES = 5 * 1024 * 1024  # a bigger "plot" is not a plot; keep the page loadable
STATUS_COLOURS = {
    "passed": ("#1a7f37", "#dafbe1"),
    "warning": ("#9a6700", "#fff8c5"),
    "inconclusive": ("#0550ae", "#ddf4ff"),
    "failed": ("#cf222e", "#ffebe9"),
    "skipped": ("#57606a", "#eaeef2"),
}
OPS = {">=": "≥", "<=": "≤", ">": ">", "<": "<", "==": "=", "ge": "≥", "le": "≤", "gt": ">", "lt": "<"}
# metrics shown first (and with their CI when there is one); everything else follows
HEADLINE_METRICS = ("macro_f1", "balanced_accuracy", "accuracy", "weighted_f1")
SPECIAL_KEYS = {"ci", "majority_baseline", "predicted_distribution", "confusion_matrix",
                "per_class", "key_metric"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1f2328;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{margin:1em 0 .3em;font-size:1.05em}
.meta{color:#57606a;font-size:.9em}
table{border-collapse:collapse;margin:.4em 0 1em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top;font-size:.92em}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:.85em}
.gate{border:1px solid #d0d7de;border-radius:6px;padding:4px 16px 12px;margin:16px 0}
.reason{margin:.4em 0 .8em}
.bar{display:inline-block;height:10px;background:#0969da;vertical-align:middle;margin-right:6px}
.plots img{max-width:100%;border:1px solid #d0d7de;margin:6px 6px 0 0}
details summary{cursor:pointer;color:#0969da}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:.85em}
.none{color:#8c959f}
"""


def esc(x: Any) -> str:
    """Escaped text of any value; "—" for None / empty."""
    if x is None or (isinstance(x, str) and not x.strip()):
        return DASH
    return html.escape(str(x), quote=True)


def fmt(x: Any, digits: int = 3) -> str:
    """Numbers to 3 decimals (integers as they are), anything else escaped."""
    if isinstance(x, bool):
        return esc(str(x).lower())
    if isinstance(x, int):
        return esc(f"{x:,}")
    v = num(x) if isinstance(x, float) else None
    if v is not None:
        return esc(f"{v:.{digits}f}")
    if isinstance(x, float):  # NaN / inf
        return DASH
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(num(c) is not None for c in x):
        return esc(_ci_text(x))  # an interval
    if isinstance(x, (dict, list)):
        return esc(json.dumps(x, default=str))
    return esc(x)


def _ci_text(ci: Any) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(num(c) is not None for c in ci):
        return f"[{num(ci[0]):.3f}, {num(ci[1]):.3f}]"
    return DASH


def badge(status: Any) -> str:
    fg, bg = STATUS_COLOURS.get(status if isinstance(status, str) else "", ("#57606a", "#ffffff"))
    return f'<span class="badge" style="color:{fg};background:{bg}">{esc(status)}</span>'


def _find_classification(metrics: Any) -> tuple[str, dict[str, Any]] | None:
    """(prefix, dict) of the dict holding macro_f1: the metrics themselves ("") or the first
    nested one ("<key>.")."""
    if not isinstance(metrics, dict):
        return None
    if "macro_f1" in metrics:
        return "", metrics
    for k, v in metrics.items():
        if isinstance(v, dict) and "macro_f1" in v:
            return f"{k}.", v
    return None


def key_metric_text(rec: dict[str, Any]) -> str:
    """'macro_f1 0.612 ≥ 0.550' from the record's key_metric, else its macro-F1 (escaped HTML)."""
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    km = rec.get("key_metric") or metrics.get("key_metric")
    if isinstance(km, dict) and (km.get("name") or km.get("value") is not None):
        text = f"{esc(km.get('name'))} {fmt(km.get('value'))}"
        if km.get("threshold") is not None:
            op = km.get("op")
            op = OPS.get(op, op) if isinstance(op, str) else "vs"
            text += f" {esc(op)} {fmt(km.get('threshold'))}"
        return text
    found = _find_classification(metrics)
    if found is not None:
        prefix, cls = found
        ci = cls["ci"].get("macro_f1") if isinstance(cls.get("ci"), dict) else None
        return f"{esc(prefix)}macro_f1 {fmt(cls.get('macro_f1'))}" + (f" {_ci_text(ci)}" if ci else "")
    return DASH


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


def summary_table(rows: dict[str, dict[str, Any]]) -> str:
    out = ["<table><tr><th>gate</th><th>status</th><th>key metric vs threshold</th>"
           "<th>reason</th><th>duration</th></tr>"]
    for gate, rec in rows.items():
        out.append(
            f'<tr><td><a href="#{esc(_anchor(gate))}">{esc(gate)}</a></td><td>{badge(rec.get("status"))}</td>'
            f"<td>{key_metric_text(rec)}</td><td>{esc(rec.get('reason'))}</td>"
            f'<td class="num">{esc(human_duration(rec.get("duration_s")))}</td></tr>'
        )
    out.append("</table>")
    return "\n".join(out)


def _anchor(gate: str) -> str:
    return "g-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in gate)


def classification_block(m: dict[str, Any]) -> str:
    """Headline metrics with CIs, majority baseline, predicted distribution, per class, cm."""
    ci = m.get("ci") if isinstance(m.get("ci"), dict) else {}
    base = m.get("majority_baseline") if isinstance(m.get("majority_baseline"), dict) else {}
    out = ["<table><tr><th>metric</th><th>value</th><th>95% CI</th><th>majority baseline</th></tr>"]
    shown = [k for k in HEADLINE_METRICS if k in m]
    for k in shown:
        out.append(f'<tr><td>{esc(k)}</td><td class="num">{fmt(m.get(k))}</td>'
                   f'<td class="num">{esc(_ci_text(ci.get(k)))}</td>'
                   f'<td class="num">{fmt(base.get(k))}</td></tr>')
    for k, v in m.items():
        if k in SPECIAL_KEYS or k in shown or isinstance(v, (dict, list)):
            continue
        out.append(f'<tr><td>{esc(k)}</td><td class="num">{fmt(v)}</td>'
                   f'<td class="num">{esc(_ci_text(ci.get(k)))}</td><td></td></tr>')
    out.append("</table>")
    if base:
        out.append(f"<p>Majority baseline: always answer <b>{esc(base.get('class'))}</b> "
                   f"(share {fmt(base.get('share'))} of the windows).</p>")
    dist = m.get("predicted_distribution")
    if isinstance(dist, dict) and dist:
        counts = {str(k): num(v) or 0.0 for k, v in dist.items()}
        total = sum(counts.values()) or 1.0
        out.append("<h3>Predicted-class distribution</h3><table><tr><th>class</th><th>predicted</th>"
                   "<th>share</th></tr>")
        for k, c in counts.items():
            share = c / total
            out.append(f'<tr><td>{esc(k)}</td><td class="num">{fmt(int(c))}</td><td>'
                       f'<span class="bar" style="width:{int(round(160 * share))}px"></span>'
                       f"{100 * share:.0f}%</td></tr>")
        out.append("</table>")
    if m.get("degenerate") is True:
        out.append('<p style="color:#cf222e"><b>Degenerate:</b> the model predicts (almost) only '
                   "one class.</p>")
    per_class = m.get("per_class")
    if isinstance(per_class, dict) and per_class:
        out.append("<h3>Per class</h3><table><tr><th>class</th><th>precision</th><th>recall</th>"
                   "<th>f1</th><th>support</th></tr>")
        for name, pc in per_class.items():
            pc = pc if isinstance(pc, dict) else {}
            out.append(f"<tr><td>{esc(name)}</td>" + "".join(
                f'<td class="num">{fmt(pc.get(k))}</td>' for k in ("precision", "recall", "f1", "support")
            ) + "</tr>")
        out.append("</table>")
    cm = m.get("confusion_matrix")
    if isinstance(cm, list) and cm and all(isinstance(r, list) for r in cm):
        names = list(per_class) if isinstance(per_class, dict) and len(per_class) == len(cm) else \
            [str(i) for i in range(len(cm))]
        out.append("<h3>Confusion matrix</h3><table><tr><th>true \\ predicted</th>"
                   + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>")
        for name, row in zip(names, cm):
            out.append(f"<tr><th>{esc(name)}</th>" + "".join(f'<td class="num">{fmt(c)}</td>' for c in row)
                       + "</tr>")
        out.append("</table>")
    return "\n".join(out)


def kv_table(d: dict[str, Any]) -> str:
    """A two-column table; nested dicts that hold classification metrics get their own block."""
    rows, blocks = [], []
    for k, v in d.items():
        if isinstance(v, dict) and "macro_f1" in v:
            blocks.append(f"<h3>{esc(k)}</h3>" + classification_block(v))
        elif isinstance(v, dict) and k == "ci":
            continue
        elif isinstance(v, dict):
            rows.append(f"<tr><td>{esc(k)}</td><td>{kv_table(v) if v else DASH}</td></tr>")
        else:
            rows.append(f'<tr><td>{esc(k)}</td><td class="num">{fmt(v)}</td></tr>')
    table = ("<table>" + "".join(rows) + "</table>") if rows else ""
    return table + "\n".join(blocks)


def metrics_section(metrics: Any) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return '<p class="none">no metrics recorded</p>'
    if "macro_f1" in metrics:
        rest = {k: v for k, v in metrics.items() if isinstance(v, dict) and k not in SPECIAL_KEYS}
        return classification_block(metrics) + (kv_table(rest) if rest else "")
    return kv_table(metrics)


def pictures(reports: Path, run_id: str | None, gate: str) -> str:
    """<img> tags (base64) for runs/<run_id>/<gate>/*.png; empty string when there are none."""
    if not run_id:
        return ""
    d = reports / "runs" / run_id / gate
    try:
        pngs = sorted(p for p in d.glob("*.png") if p.is_file())
    except OSError:
        return ""
    imgs = []
    for p in pngs:
        try:
            size = p.stat().st_size
            if size > MAX_PNG_BYTES:
                imgs.append(f'<p class="none">{esc(p.name)} not embedded: {size // 1024} KiB</p>')
                continue
            data = base64.b64encode(p.read_bytes()).decode("ascii")
        except OSError as exc:
            imgs.append(f'<p class="none">{esc(p.name)} unreadable: {esc(exc)}</p>')
            continue
        imgs.append(f'<figure style="display:inline-block;margin:0"><img alt="{esc(p.stem)}" '
                    f'title="{esc(p.name)}" src="data:image/png;base64,{data}"></figure>')
    return '<div class="plots">' + "\n".join(imgs) + "</div>" if imgs else ""


def gate_section(reports: Path, gate: str, rec: dict[str, Any]) -> str:
    out = [f'<div class="gate" id="{esc(_anchor(gate))}"><h2>{esc(gate)} {badge(rec.get("status"))}</h2>',
           f'<p class="reason">{esc(rec.get("reason"))}</p>',
           f'<p class="meta">model {esc(rec.get("model"))} · duration '
           f'{esc(human_duration(rec.get("duration_s")))} · recorded {esc(rec.get("timestamp"))}</p>']
    out.append("<h3>Metrics</h3>" + metrics_section(rec.get("metrics")))
    comp = rec.get("comparison")
    if isinstance(comp, dict) and comp:
        out.append("<h3>Comparison</h3>" + kv_table(comp))
    elif comp not in (None, {}, []):
        out.append(f"<h3>Comparison</h3><p>{fmt(comp)}</p>")
    out.append(pictures(reports, rec.get("run_id"), gate))
    for title, key in (("Artifacts", "artifacts"), ("Config", "config")):
        val = rec.get(key)
        if val:
            out.append(f"<details><summary>{title}</summary><pre>"
                       f"{esc(json.dumps(val, indent=2, sort_keys=True, default=str))}</pre></details>")
    out.append("</div>")
    return "\n".join(out)


def build_report(reports_dir: str | Path = "reports", run_id: str | None = None) -> str:
    """The HTML page (a string) for `run_id`, default the newest run in the results log."""
    reports = Path(reports_dir)
    log_path = results_path(reports)
    records = read_records(log_path)
    run_id = run_id or latest_run_id(records)
    rows = latest_by_gate(records, run_id) if run_id else {}
    runs = sorted({r.get("run_id") for r in records if isinstance(r.get("run_id"), str)})
    generated = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>moola report {esc(run_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>moola gated workflow — run {esc(run_id)}</h1>",
        f'<p class="meta">generated {esc(generated)} from {esc(log_path)} · '
        f"{len(records)} record(s), {len(runs)} run(s) in the log</p>",
    ]
    if not rows:
        parts.append(f'<p class="none">No results for this run in {esc(log_path)}. Run the gates '
                     f"first (<code>make gates</code>).</p>")
    else:
        counts = {s: sum(1 for r in rows.values() if r.get("status") == s) for s in STATUS_COLOURS}
        parts.append("<p>" + " ".join(f"{badge(s)} {n}" for s, n in counts.items() if n) + "</p>")
        parts.append(summary_table(rows))
        parts += [gate_section(reports, g, rows[g]) for g in sorted(rows, key=gate_sort_key)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(reports_dir: str | Path = "reports", out: str | Path | None = None,
                 run_id: str | None = None) -> Path:
    """Write the page atomically to `out` (default ``<reports>/report.html``); returns the path."""
    out = Path(out) if out is not None else Path(reports_dir) / "report.html"
    page = build_report(reports_dir, run_id)
    atomic_write_text(out, page, fsync=False)
    return out


def report_main(argv: list[str] | None = None) -> int:
    """Entry point of ``moola report``; returns the exit code (0 written, 2 no results log)."""
    p = argparse.ArgumentParser(prog="moola report",
                                description="Write one self-contained HTML page for a run.")
    p.add_argument("--reports", default="reports", metavar="DIR",
                   help="reports directory (default: reports)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default: DIR/report.html)")
    p.add_argument("--run-id", default=None, help="run to show (default: the newest in the log)")
    args = p.parse_args(argv)
    log_path = results_path(args.reports)
    if not log_path.exists():
        print(f"no results log at {log_path}; run the gates first (make gates) or pass --reports DIR",
              file=sys.stderr)
        return 2
    out = write_report(args.reports, args.out, args.run_id)
    print(f"wrote {out}")
    return 0
