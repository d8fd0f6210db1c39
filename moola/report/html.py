"""``moola report``: one self-contained HTML page for a run of the results log.

The page holds the summary table (gate, status, key metric vs threshold, reason, duration), the
models side by side (macro-F1 with its CI against the majority baseline and chance), the history
of the runs in the log (a table and the trend of each model's macro-F1), then per gate its
verdict details (metrics with confidence intervals, majority baseline, predicted-class
distribution, per-class scores and the confusion matrix with class names, the comparison) and its
learning curves with the lines it is judged against. Charts are inline SVG (:mod:`.charts`), so
the file can be copied anywhere (a laptop after a sync) and opened without the reports
directory. Numbers and dicts are written for people (:mod:`.fmt`), every piece of text is
escaped, and every field may be missing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import sys
from pathlib import Path
from typing import Any

from moola.io_utils import atomic_write_text
from moola.report import charts, fmt
from moola.report.fmt import DASH
from moola.report.results import (
    gate_sort_key,
    latest_by_gate,
    latest_run_id,
    read_records,
    results_path,
)
from moola.report.runs import RunSummary, classification, runs

EXIT_OK, EXIT_UNKNOWN_RUN, EXIT_NO_RESULTS = 0, 1, 2
STATUS_COLOURS = {
    "passed": ("#1a7f37", "#dafbe1"),
    "warning": ("#9a6700", "#fff8c5"),
    "inconclusive": ("#0550ae", "#ddf4ff"),
    "failed": ("#cf222e", "#ffebe9"),
    "skipped": ("#57606a", "#eaeef2"),
}
# metrics shown first (and with their CI when there is one); everything else follows
HEADLINE_METRICS = ("macro_f1", "balanced_accuracy", "accuracy", "weighted_f1")
# parts of a classification shown by the block itself, not repeated in its table of the rest
SPECIAL_KEYS = {"ci", "majority_baseline", "predicted_distribution", "confusion_matrix",
                "per_class", "key_metric"}

CSS = """.decision{border:2px solid #1a7f37;border-radius:8px;padding:6px 16px;margin:12px 0;
background:#f6fff8}.decision .deploy{font-size:1.1em}

body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1f2328;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{margin:1em 0 .3em;font-size:1.05em}h4{margin:.8em 0 .3em;font-size:.98em}
nav a{margin-right:.6em;display:inline-block}
.meta{color:#57606a;font-size:.9em}
table{border-collapse:collapse;margin:.4em 0 1em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top;font-size:.92em}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.val{overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:.85em}
.gate{border:1px solid #d0d7de;border-radius:6px;padding:4px 16px 12px;margin:16px 0}
.reason{margin:.4em 0 .8em;overflow-wrap:anywhere}
.bar{display:inline-block;height:10px;background:#0969da;vertical-align:middle;margin-right:6px}
details summary{cursor:pointer;color:#0969da}
.none{color:#8c959f}
.scroll{overflow-x:auto;max-width:100%}
figure.figure{margin:.6em 0 1.2em}
figure.figure figcaption{font-weight:600;margin-bottom:.3em;overflow-wrap:anywhere}
.panels{display:flex;flex-wrap:wrap;gap:16px}
.panel{flex:1 1 420px;min-width:0;max-width:640px}
svg.chart{width:100%;height:auto;display:block}
table.models td.strip,table.models th.strip{width:320px;min-width:200px;padding:2px 4px}
ul.legend{list-style:none;padding:0;margin:.2em 0;font-size:.82em;color:#57606a;display:flex;flex-wrap:wrap;gap:2px 14px}
ul.legend svg{vertical-align:middle}
table.cm td.num{min-width:4.5em;text-align:center}
tr.current td{font-weight:600}
td.small{font-size:.82em;white-space:nowrap}
table.history th,table.history td{font-size:.84em;padding:3px 6px}
.st-passed{color:#1a7f37}.st-warning{color:#9a6700}.st-inconclusive{color:#0550ae}
.st-failed{color:#cf222e}.st-skipped{color:#57606a}
"""


class UnknownRunError(ValueError):
    """A run id that is not in the results log; the message lists the runs that are."""


def esc(x: Any) -> str:
    """Escaped one-line text of any value; "—" for None / empty."""
    return html.escape(fmt.text(x), quote=True)


def val(x: Any, key: Any = None) -> str:
    """Escaped :func:`moola.report.fmt.value` (numbers rounded, dicts and lists as text)."""
    return html.escape(fmt.value(x, key=key), quote=True)


def wrap_name(name: Any) -> str:
    """An escaped snake_case name that may break after its underscores (narrow columns)."""
    return esc(name).replace("_", "_<wbr>")


def cell(x: Any, key: Any = None) -> str:
    """A table cell: numbers right-aligned on one line, any other value wrapping."""
    is_num = isinstance(x, (int, float)) and not isinstance(x, bool)
    return f'<td class="{"num" if is_num else "val"}">{val(x, key)}</td>'


def badge(status: Any) -> str:
    fg, bg = STATUS_COLOURS.get(status if isinstance(status, str) else "", ("#57606a", "#ffffff"))
    return f'<span class="badge" style="color:{fg};background:{bg}">{esc(status)}</span>'


def anchor(gate: str) -> str:
    return "g-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in str(gate))


def key_metric_html(rec: dict[str, Any]) -> str:
    """The rule behind the record's status ('delta_f1 CI -0.193..+0.004 straddles +0.000',
    moola.report.summary.rule_text), else its macro-F1 and CI."""
    from moola.report.summary import rule_text

    text = rule_text(rec)
    if text is not None:
        return esc(text)
    found = classification(rec.get("metrics"))
    if found is None:
        return DASH
    where, m = found
    ci = m["ci"].get("macro_f1") if isinstance(m.get("ci"), dict) else None
    name = f"{where}.macro_f1" if where else "macro_f1"
    return esc(f"{name} {fmt.number(m.get('macro_f1'))}" + (f" {fmt.interval(ci)}" if ci else ""))


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


def summary_table(rows: dict[str, dict[str, Any]]) -> str:
    out = ['<div class="scroll"><table class="summary"><tr><th>gate</th><th>status</th>'
           "<th>rule behind the status</th><th>reason</th><th>duration</th></tr>"]
    for gate, rec in rows.items():
        out.append(
            f'<tr><td><a href="#{esc(anchor(gate))}">{esc(gate)}</a></td><td>{badge(rec.get("status"))}</td>'
            f'<td>{key_metric_html(rec)}</td><td class="reason">{esc(rec.get("reason"))}</td>'
            f'<td class="num">{esc(fmt.human_duration(rec.get("duration_s")))}</td></tr>')
    out.append("</table></div>")
    return "\n".join(out)


def confusion_matrix(m: dict[str, Any], names: list[str], title: str) -> str:
    """The matrix as a table shaded by the share of each true class, class names on both axes."""
    cm = m.get("confusion_matrix")
    if not (isinstance(cm, list) and cm and all(isinstance(r, list) and len(r) == len(cm) for r in cm)):
        return ""
    if len(names) != len(cm):
        names = [f"class {i}" for i in range(len(cm))]
    total = sum(fmt.num(c) or 0 for r in cm for c in r)
    n, reps = fmt.num(m.get("n")), fmt.num(m.get("n_replicas"))
    what = f"{fmt.integer(total)} predictions"
    if n and reps and reps > 1 and n * reps == total:
        what += f" ({fmt.integer(n)} scored windows x {fmt.integer(reps)} seeds)"
    out = [f'<h4 class="cm-title">{esc(title)}: {what}</h4>',
           '<div class="scroll"><table class="cm"><tr><th>true \\ predicted</th>'
           + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"]
    for name, row in zip(names, cm):
        n_true = sum(fmt.num(c) or 0 for c in row)
        cells = []
        for c in row:
            share = (fmt.num(c) or 0) / n_true if n_true else 0.0
            colour = "#fff" if share > 0.6 else "#1f2328"
            cells.append(f'<td class="num" style="background:rgba(9,105,218,{0.08 + 0.85 * share:.2f});'
                         f'color:{colour}">{val(c)}<br><small>{fmt.percent(share)}</small></td>')
        out.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
    out.append("</table></div><p class=\"meta\">shade: share of the true class (row)</p>")
    return "\n".join(out)


def classification_block(m: dict[str, Any], title: str, class_names: list[str]) -> str:
    """Headline metrics with CIs, majority baseline, predicted distribution, per class, matrix."""
    ci = m.get("ci") if isinstance(m.get("ci"), dict) else {}
    base = m.get("majority_baseline") if isinstance(m.get("majority_baseline"), dict) else {}
    out = ['<table><tr><th>metric</th><th>value</th><th>95% CI</th><th>majority baseline</th></tr>']
    shown = [k for k in HEADLINE_METRICS if k in m]
    for k in shown:
        out.append(f'<tr><td>{esc(k)}</td><td class="num">{val(m.get(k))}</td>'
                   f'<td class="num">{esc(fmt.interval(ci.get(k)))}</td>'
                   f'<td class="num">{val(base.get(k))}</td></tr>')
    out.append("</table>")
    if base:
        out.append(f"<p>Majority baseline: always answer <b>{esc(base.get('class'))}</b> "
                   f"(share {esc(fmt.percent(base.get('share')))} of the windows).</p>")
    dist = m.get("predicted_distribution")
    if isinstance(dist, dict) and dist:
        counts = {str(k): fmt.num(v) or 0.0 for k, v in dist.items()}
        total = sum(counts.values()) or 1.0
        out.append("<h4>Predicted-class distribution</h4><table><tr><th>class</th><th>predicted</th>"
                   "<th>share</th></tr>")
        for k, c in counts.items():
            share = c / total
            out.append(f'<tr><td>{esc(k)}</td><td class="num">{fmt.integer(c)}</td><td>'
                       f'<span class="bar" style="width:{int(round(160 * share))}px"></span>'
                       f"{fmt.percent(share)}</td></tr>")
        out.append("</table>")
    if m.get("degenerate") is True:
        out.append('<p style="color:#cf222e"><b>Degenerate:</b> the model predicts (almost) only '
                   "one class.</p>")
    per_class = m.get("per_class")
    if isinstance(per_class, dict) and per_class:
        out.append("<h4>Per class</h4><table><tr><th>class</th><th>precision</th><th>recall</th>"
                   "<th>f1</th><th>support</th></tr>")
        for name, pc in per_class.items():
            pc = pc if isinstance(pc, dict) else {}
            out.append(f"<tr><td>{esc(name)}</td>" + "".join(
                f'<td class="num">{val(pc.get(k))}</td>' for k in ("precision", "recall", "f1", "support")
            ) + "</tr>")
        out.append("</table>")
        class_names = [str(k) for k in per_class]
    out.append(confusion_matrix(m, class_names, f"Confusion matrix — {title}"))
    rest = {k: v for k, v in m.items() if k not in SPECIAL_KEYS and k not in shown}
    if rest:
        out.append("<h4>More</h4>" + kv_table(rest, title, class_names))
    return "\n".join(out)


def _rows_table(items: list[dict[str, Any]]) -> str:
    """A list of flat dicts (e.g. the replicas) as a table, one column per key."""
    cols = list(dict.fromkeys(k for it in items for k in it))
    head = "".join(f"<th>{wrap_name(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(cell(it.get(c), c) for c in cols) + "</tr>" for it in items)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def kv_table(d: dict[str, Any], title: str = "", class_names: list[str] | None = None) -> str:
    """A two-column table of any recorded dict; nested dicts get nested tables, classifier
    scores a block of their own, a list of records a table."""
    rows, blocks = [], []
    for k, v in d.items():
        path = f"{title} › {k}" if title else str(k)
        if isinstance(v, dict) and fmt.num(v.get("macro_f1")) is not None:
            blocks.append(f"<h4>{esc(k)}</h4>" + classification_block(v, path, class_names or []))
        elif isinstance(v, dict):
            rows.append(f"<tr><td>{esc(k)}</td><td>{kv_table(v, path, class_names) if v else DASH}"
                        "</td></tr>")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            rows.append(f"<tr><td>{esc(k)}</td><td>{_rows_table(v)}</td></tr>")
        else:
            rows.append(f"<tr><td>{esc(k)}</td>{cell(v, k)}</tr>")
    table = ("<table>" + "".join(rows) + "</table>") if rows else ""
    return table + "\n".join(blocks)


def flat_table(d: dict[str, Any]) -> str:
    """A nested dict (config, artifacts) as dotted keys and values, one row each."""
    flat: dict[str, Any] = {}

    def walk(x: Any, prefix: str) -> None:
        if isinstance(x, dict) and x:
            for k, v in x.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            flat[prefix] = x

    walk(d, "")
    return "<table>" + "".join(f"<tr><td>{esc(k)}</td>{cell(v, k.rsplit('.', 1)[-1])}</tr>"
                               for k, v in flat.items()) + "</table>"


def gate_section(reports: Path, gate: str, rec: dict[str, Any], class_names: list[str]) -> str:
    model, status = rec.get("model"), rec.get("status")
    out = [f'<section class="gate" id="{esc(anchor(gate))}"><h2>{esc(gate)} {badge(status)}</h2>',
           f'<p class="reason">{esc(rec.get("reason"))}</p>',
           f'<p class="meta">model {esc(model)} · duration '
           f'{esc(fmt.human_duration(rec.get("duration_s")))} · recorded {esc(rec.get("timestamp"))}</p>']
    metrics = rec.get("metrics")
    title = f"{fmt.text(gate)}: {fmt.text(model)} ({fmt.text(status)})"
    if not isinstance(metrics, dict) or not metrics:
        out.append('<h3>Metrics</h3><p class="none">no metrics recorded</p>')
    elif fmt.num(metrics.get("macro_f1")) is not None:
        out.append("<h3>Metrics</h3>" + classification_block(metrics, title, class_names))
    else:
        out.append("<h3>Metrics</h3>" + kv_table(metrics, title, class_names))
    comp = rec.get("comparison")
    if isinstance(comp, dict) and comp:
        out.append("<h3>Comparison</h3>" + kv_table(comp))
    elif comp not in (None, {}, []):
        out.append(f"<h3>Comparison</h3><p>{val(comp)}</p>")
    run_id = rec.get("run_id")
    if isinstance(run_id, str) and run_id:
        out.append(charts.learning_curves(rec, reports / "runs" / run_id / gate / "metrics.csv"))
    for label, key in (("Artifacts", "artifacts"), ("Config", "config")):
        if isinstance(rec.get(key), dict) and rec[key]:
            out.append(f"<details><summary>{label}</summary>{flat_table(rec[key])}</details>")
    out.append("</section>")
    return "\n".join(out)


def _class_names(rows: dict[str, dict[str, Any]]) -> list[str]:
    """The dataset's class names as gate 0 recorded them (for a matrix without per-class rows)."""
    for rec in rows.values():
        data = (rec.get("metrics") or {}).get("data") if isinstance(rec.get("metrics"), dict) else None
        if isinstance(data, dict) and isinstance(data.get("classes"), dict):
            return [str(k) for k in data["classes"]]
    return []


def unknown_run_message(run_id: str, log_path: Path, all_runs: list[RunSummary]) -> str:
    newest = list(reversed(all_runs))[:20]
    lines = [f"no run {run_id!r} in {log_path}; the runs there, newest first:"]
    lines += [f"  {r.run_id}  {fmt.local_time(r.started)}  {r.profile or DASH}  "
              + ", ".join(f"{n} {s}" for s, n in r.counts.items()) for r in newest]
    if len(all_runs) > len(newest):
        lines.append(f"  ... and {len(all_runs) - len(newest)} older")
    return "\n".join(lines)


def build_report(reports_dir: str | Path = "reports", run_id: str | None = None) -> str:
    """The HTML page (a string) for `run_id`, default the newest run in the results log.

    An unknown `run_id` raises :class:`UnknownRunError`, naming the runs in the log.
    """
    reports = Path(reports_dir)
    log_path = results_path(reports)
    records = read_records(log_path)
    all_runs = runs(records)
    if run_id is not None and run_id not in {r.run_id for r in all_runs}:
        raise UnknownRunError(unknown_run_message(run_id, log_path, all_runs))
    run_id = run_id or latest_run_id(records)
    rows = latest_by_gate(records, run_id) if run_id else {}
    generated = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>moola report {esc(run_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>moola gated workflow — run {esc(run_id)}</h1>",
        f'<p class="meta">generated {esc(generated)} from {esc(log_path)} · '
        f"{len(records)} record(s), {len(all_runs)} run(s) in the log</p>",
    ]
    if not rows:
        parts.append(f'<p class="none">No results in {esc(log_path)}. Run the gates first '
                     f"(<code>make gates</code>).</p></body></html>\n")
        return "\n".join(parts)
    counts = {s: sum(1 for r in rows.values() if r.get("status") == s) for s in STATUS_COLOURS}
    parts.append("<p>" + " ".join(f"{badge(s)} {n}" for s, n in counts.items() if n) + "</p>")
    links = [("decision", "decision"), ("summary", "summary"), ("models", "models"),
             ("history", "history")]
    links += [(anchor(g), g) for g in rows]
    parts.append("<nav>" + " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in links) + "</nav>")
    decision = rows.get("decision")
    if decision is not None:  # the answer first, above every per-gate table
        parts.append(charts.decision_box(decision, _card_href(reports, decision)))
    else:
        parts.append('<section id="decision"><h2>Deploy this</h2><p class="none">this run made '
                     'no decision (it judged no gate that trains a model)</p></section>')
    parts.append('<section id="summary"><h2>Summary</h2>' + summary_table(rows) + "</section>")
    parts.append('<section id="models"><h2>Models side by side</h2>'
                 + charts.model_table(rows, anchor) + "</section>")
    parts.append('<section id="history"><h2>History of the runs in the log</h2>'
                 + charts.history(all_runs, run_id) + "</section>")
    names = _class_names(rows)
    parts += [gate_section(reports, g, rows[g], names) for g in sorted(rows, key=gate_sort_key)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _card_href(reports: Path, decision: dict[str, Any]) -> str | None:
    """The recommended model's card.md, relative to report.html, when it was exported."""
    export = (decision.get("artifacts") or {}).get("model_export") or {}
    path = export.get("path")
    if not path or not (Path(path) / "card.md").is_file():
        return None
    try:
        return str((Path(path) / "card.md").resolve().relative_to(reports.resolve()))
    except ValueError:
        return (Path(path) / "card.md").resolve().as_uri()


def write_report(reports_dir: str | Path = "reports", out: str | Path | None = None,
                 run_id: str | None = None) -> Path:
    """Write the page atomically to `out` (default ``<reports>/report.html``); returns the path.

    The page is built before anything is written: an unknown run leaves the old page as it was.
    """
    out = Path(out) if out is not None else Path(reports_dir) / "report.html"
    page = build_report(reports_dir, run_id)
    atomic_write_text(out, page, fsync=False)
    return out


def report_main(argv: list[str] | None = None) -> int:
    """Entry point of ``moola report``: 0 written; 1 unknown run id (the runs are listed);
    2 no results to report."""
    p = argparse.ArgumentParser(
        prog="moola report",
        description="Write one self-contained HTML page for a run of the results log. Exit 0: "
        "written; 1: unknown --run-id (the runs in the log are listed, the page is left as it "
        "was); 2: no results to report.")
    p.add_argument("--reports", default="reports", metavar="DIR",
                   help="reports directory (default: reports)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default: DIR/report.html)")
    p.add_argument("--run-id", default=None, help="run to show (default: the newest in the log)")
    args = p.parse_args(argv)
    log_path = results_path(args.reports)
    if not read_records(log_path):
        what = "no results log" if not log_path.exists() else "no results in the log"
        print(f"{what} at {log_path}; run the gates first (make gates) or pass --reports DIR",
              file=sys.stderr)
        return EXIT_NO_RESULTS
    try:
        out = write_report(args.reports, args.out, args.run_id)
    except UnknownRunError as exc:
        print(f"moola report: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN_RUN
    print(f"wrote {out}")
    return EXIT_OK
