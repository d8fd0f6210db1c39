"""The report's charts, each with the lines its gate is judged against.

* :func:`learning_curves`: a gate's loss and stopping-slice macro-F1 per epoch (from its
  ``metrics.csv``) with the majority baseline, chance, the gate's pooled score, the compared
  model's score and the pass/fail lines derived from it, the freeze / unfreeze points of a
  pretrained encoder, and for pretraining the linear-interpolation MSE it must beat;
* :func:`model_table`: every model of a run side by side, macro-F1 with its CI against the
  majority baseline and chance (and the threshold where the gate has one in macro-F1);
* :func:`history`: the runs in the log, a table and the trend of each model's macro-F1.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from moola.report import fmt, svg
from moola.report.fmt import num
from moola.report.plots import read_epoch_curves
from moola.report.results import gate_sort_key
from moola.report.runs import RunSummary, chance_macro_f1, classification

MAX_HISTORY_RUNS = 25  # rows of the history table and points of the trend (newest runs)
STATUS_DOT = {"passed": "#1a7f37", "warning": "#9a6700", "inconclusive": "#0550ae",
              "failed": "#cf222e", "skipped": "#57606a"}


def esc(x: Any) -> str:
    return svg.esc(fmt.text(x))


def _cfg(rec: dict[str, Any], section: str) -> dict[str, Any]:
    cfg = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    sec = cfg.get(section)
    return sec if isinstance(sec, dict) else {}


def _figure(title: str, panels: list[tuple[str, list[svg.Ref], list[tuple[str, str, str]]]],
            chart: str, note: str = "") -> str:
    """A titled figure of one or more (svg, refs, series legend) panels, legends below each."""
    out = [f'<figure class="figure" data-figure="{svg.esc(chart)}"><figcaption>{title}</figcaption>'
           '<div class="panels">']
    for body, refs, series_legend in panels:
        out.append(f'<div class="panel">{body}{svg.legend(series_legend + svg.ref_legend(refs))}</div>')
    out.append("</div>" + (f'<p class="meta">{note}</p>' if note else "") + "</figure>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# learning curves
# ---------------------------------------------------------------------------------------------


def compared_refs(rec: dict[str, Any], own: float | None) -> list[svg.Ref]:
    """Lines for the model a gate is compared with, and the pass/fail lines around it.

    The comparison holds each side's pooled macro-F1 (``<side>_macro_f1``); the side that is not
    this gate's own score is the reference, named by ``comparison.reference`` when that is
    another gate. Its margins (``min_delta``, ``max_harm``, ``max_drop_pp``) become lines at the
    reference's score plus or minus them: a verdict needs the difference to clear them with
    significance, so the lines show where the pooled score must lie, not a hard cut.
    """
    cmp = rec.get("comparison") if isinstance(rec.get("comparison"), dict) else {}
    others = [(k[: -len("_macro_f1")], num(v)) for k, v in cmp.items()
              if k.endswith("_macro_f1") and num(v) is not None
              and (own is None or not math.isclose(num(v), own, abs_tol=1e-9))]
    if len(others) != 1:
        return []
    side, score = others[0]
    ref_gate = cmp.get("reference")
    who = ref_gate if isinstance(ref_gate, str) and ref_gate.startswith("gate_") \
        and ref_gate != rec.get("gate") else f"the {side} model"
    refs = [svg.Ref(score, f"{who}: pooled macro-F1 {fmt.number(score)}", "reference")]
    for key, offset, what in (("min_delta", num(cmp.get("min_delta")), "passes if significantly above"),
                              ("max_harm", -(num(cmp.get("max_harm")) or 0.0), "fails if significantly below"),
                              ("max_drop_pp", -(num(cmp.get("max_drop_pp")) or 0.0) / 100,
                               "fails if significantly below")):
        if offset:  # a zero margin is the reference line itself
            size = f"{num(cmp[key]):g} pp" if key == "max_drop_pp" else fmt.number(abs(offset))
            refs.append(svg.Ref(score + offset, f"{what} {who} {'+' if offset > 0 else '−'} {size}",
                                "threshold"))
    return refs


def schedule_refs(rec: dict[str, Any], last_epoch: float) -> tuple[list[svg.Ref], list[svg.Span]]:
    """The encoder's freeze span and unfreeze points (1-based epochs) of a pretrained model.

    A record does not say whether its model started from the encoder except in its model name
    ("... (pretrained encoder ...)", gates 4 and 5); the schedule comes from the resolved
    config (finetune.freeze_epochs, finetune.unfreeze_every, model.layers), as the trainer's
    ``ProgressiveUnfreezer`` applies it: epoch index e < freeze_epochs is frozen, then one layer
    more (top first) every unfreeze_every epochs.
    """
    if "pretrained" not in str(rec.get("model") or "").lower():
        return [], []
    ft, model = _cfg(rec, "finetune"), _cfg(rec, "model")
    freeze, every = num(ft.get("freeze_epochs")), num(ft.get("unfreeze_every"))
    layers = int(num(model.get("layers")) or 1)
    if freeze is None or every is None:
        return [], []
    spans = [svg.Span(0.5, min(freeze, last_epoch) + 0.5,
                      f"encoder frozen (epochs 1-{int(freeze)})")] if freeze > 0 else []
    starts = [freeze] if every == 0 else [freeze + i * every for i in range(layers)]
    refs = []
    for i, e in enumerate(starts, start=1):
        if e + 1 > last_epoch:
            break
        what = ("encoder unfreezes" if every == 0 or layers == 1
                else f"encoder layer {i} of {layers} unfreezes (top first)")
        refs.append(svg.Ref(e + 0.5, f"{what} at epoch {int(e) + 1}", "schedule", axis="x"))
    return refs, spans


def learning_curves(rec: dict[str, Any], metrics_csv: Path) -> str:
    """The gate's learning-curve figure (HTML), or "" when it has no metrics.csv to plot."""
    try:
        curves = read_epoch_curves(metrics_csv)
    except (FileNotFoundError, OSError, UnicodeDecodeError):
        return ""
    if not any(curves.get(k) for k in ("train_loss", "val_loss", "val_macro_f1")):
        return ""
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    found = classification(metrics)
    m = found[1] if found and found[0] == "" else {}
    last = max((e + 1 for c in curves.values() for e in c), default=1)
    pretraining = bool(curves.get("val_ratio"))
    panels = []

    # loss per epoch: train, validation, and what the loss is judged against
    series = [svg.Series("training loss", [(e + 1, v) for e, v in sorted(curves["train_loss"].items())],
                         svg.PALETTE[0])]
    val_name = "masked MSE, stopping windows" if pretraining else "stopping-slice loss"
    if curves["val_loss"]:
        series.append(svg.Series(val_name, [(e + 1, v) for e, v in sorted(curves["val_loss"].items())],
                                 svg.PALETTE[1]))
    refs: list[svg.Ref] = []
    if pretraining:
        recon = metrics.get("reconstruction") if isinstance(metrics.get("reconstruction"), dict) else {}
        ratios = [curves["val_loss"][e] / r for e, r in curves["val_ratio"].items()
                  if e in curves["val_loss"] and r]
        interp = statistics.median(ratios) if ratios else num(recon.get("interp_mse"))
        if interp is not None:
            refs.append(svg.Ref(interp, f"linear interpolation MSE {fmt.number(interp, '.4f')} "
                                        f"(the trivial reconstruction to beat)", "baseline"))
            margin = num(_cfg(rec, "gates").get("recon_margin"))
            if margin:
                refs.append(svg.Ref(interp * (1 - margin), f"gate threshold: {margin:.0%} below "
                                                           f"interpolation", "threshold"))
        # the judged MSE is on other windows (those that chose no epoch), with another
        # interpolation MSE: comparable only as a ratio, on the ratio panel
    elif num(m.get("n_classes")):
        k = int(num(m["n_classes"]))
        refs.append(svg.Ref(math.log(k), f"uniform guess: ln {k} = {math.log(k):.3f}", "chance"))
    sched, spans = schedule_refs(rec, last)
    body = svg.line_chart(series, refs + sched, spans, x_label="epoch", y_label="loss",
                          chart="loss")
    panels.append((body, refs + sched, [(s.label, s.color, "") for s in series]
                   + [(sp.label, "#f2cc60", "") for sp in spans]))

    if pretraining:
        panels.append(_ratio_panel(rec, curves["val_ratio"], sched, spans))
    # stopping-slice macro-F1 per epoch against the pooled scores the gate is judged on
    f1 = curves.get("val_macro_f1") or {}
    if f1:
        pts = [(e + 1, v) for e, v in sorted(f1.items())]
        best = max(pts, key=lambda p: p[1])
        own = num(m.get("macro_f1"))
        refs = []
        base = m.get("majority_baseline") if isinstance(m.get("majority_baseline"), dict) else {}
        if num(base.get("macro_f1")) is not None:
            refs.append(svg.Ref(num(base["macro_f1"]), f"majority baseline (always "
                                f"'{fmt.text(base.get('class'))}'): {fmt.number(base['macro_f1'])}",
                                "baseline"))
        chance = chance_macro_f1(m)
        if chance is not None:
            refs.append(svg.Ref(chance, f"chance (uniform guessing): {fmt.number(chance)}", "chance"))
        if own is not None:
            refs.append(svg.Ref(own, f"this gate: pooled out-of-fold macro-F1 {fmt.number(own)}", "own"))
        refs += compared_refs(rec, own)
        series = [svg.Series("stopping-slice macro-F1", pts, svg.PALETTE[2])]
        body = svg.line_chart(series, refs + sched, spans, x_label="epoch", y_label="macro-F1",
                              y_range=(0.0, 1.0), best=best, chart="macro-f1")
        panels.append((body, refs + sched, [(s.label, s.color, "") for s in series]
                       + [(f"best {fmt.number(best[1])} (epoch {int(best[0])})", "#cf222e", "")]))
    title = (f"Learning curves — {esc(rec.get('gate'))}: {esc(rec.get('model'))} "
             f"<span class=\"st-{esc(rec.get('status'))}\">({esc(rec.get('status'))})</span>")
    seeds = metrics.get("seeds") if isinstance(metrics.get("seeds"), list) else []
    folds = num(metrics.get("n_folds"))
    which = (f"one replica (seed {esc(seeds[0])}, fold {int(folds) - 1}) of {len(seeds)} seeds x "
             f"{int(folds)} folds; " if seeds and folds else "")
    note = (f"{which}epochs counted from 1. The stopping slice is a few of the fold's training "
            "windows that early stopping watches; the horizontal lines are pooled scores over all "
            "replicas on the scored windows, which the verdict uses.") if f1 else \
        "epochs counted from 1."
    return _figure(title, panels, "learning-curves", note)


def _ratio_panel(rec: dict[str, Any], ratio: dict[int, float], sched: list[svg.Ref],
                 spans: list[svg.Span]) -> tuple[str, list[svg.Ref], list[tuple[str, str, str]]]:
    """Pretraining's masked MSE over interpolation's per epoch: the gate's test at a scale
    where it shows (on the loss panel both sit within a fraction of a percent)."""
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    recon = metrics.get("reconstruction") if isinstance(metrics.get("reconstruction"), dict) else {}
    refs = [svg.Ref(1.0, "linear interpolation (ratio 1)", "baseline")]
    margin = num(_cfg(rec, "gates").get("recon_margin"))
    if margin:
        refs.append(svg.Ref(1 - margin, f"gate threshold: ratio below {1 - margin:g}", "threshold"))
    judged = num(recon.get("ratio"))
    if judged is not None:
        refs.append(svg.Ref(judged, f"ratio judged {fmt.number(judged, '.4f')} (on the "
                                    f"held-out windows that chose no epoch)", "own"))
    series = [svg.Series("stopping windows: masked MSE / interpolation MSE",
                         [(e + 1, v) for e, v in sorted(ratio.items())], svg.PALETTE[1])]
    body = svg.line_chart(series, refs + sched, spans, x_label="epoch",
                          y_label="MSE relative to interpolation", chart="recon-ratio")
    return body, refs + sched, [(s.label, s.color, "") for s in series]


# ---------------------------------------------------------------------------------------------
# the models side by side
# ---------------------------------------------------------------------------------------------


def model_rows(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per record of the run that scores a classifier: label, macro-F1, CI and the
    reference values (majority baseline, chance, threshold when the key metric is that score)."""
    out = []
    for gate, rec in rows.items():
        found = None if gate == "decision" else classification(rec.get("metrics"))
        if found is None:  # the decision scores no model of its own (its box has the answer)
            continue
        where, m = found
        ci = m.get("ci", {}).get("macro_f1") if isinstance(m.get("ci"), dict) else None
        base = m.get("majority_baseline") if isinstance(m.get("majority_baseline"), dict) else {}
        model = fmt.text(rec.get("model"))
        if where:
            model = f"linear probe on the {model}" if "probe" in where else f"{model} ({where})"
        km = rec.get("key_metric") if isinstance(rec.get("key_metric"), dict) else {}
        threshold = num(km.get("threshold")) if "macro_f1" in str(km.get("name")) else None
        out.append({"gate": gate, "status": rec.get("status"), "model": model,
                    "macro_f1": num(m.get("macro_f1")), "ci": ci if fmt.is_interval(ci) else None,
                    "majority": num(base.get("macro_f1")), "chance": chance_macro_f1(m),
                    "threshold": threshold, "n": m.get("n"), "replicas": m.get("n_replicas")})
    return out


def model_table(rows: dict[str, dict[str, Any]], anchor) -> str:
    """Each model's macro-F1 with its CI against the majority baseline and chance (HTML)."""
    entries = model_rows(rows)
    if not entries:
        return '<p class="none">no classifier scored in this run</p>'
    out = ['<figure class="figure" data-figure="models"><figcaption>Macro-F1 of each model with its '
           '95% CI, pooled over the scored windows, against the majority baseline and chance'
           '</figcaption><table class="models"><tr><th>gate</th><th>model</th><th>macro-F1</th>'
           f'<th>95% CI</th><th class="strip">{svg.axis_strip()}</th></tr>']
    for e in entries:
        refs = []
        if e["majority"] is not None:
            refs.append(svg.Ref(e["majority"], f"majority baseline {fmt.number(e['majority'])}", "baseline"))
        if e["chance"] is not None:
            refs.append(svg.Ref(e["chance"], f"chance {fmt.number(e['chance'])}", "chance"))
        if e["threshold"] is not None:
            refs.append(svg.Ref(e["threshold"], f"threshold {fmt.number(e['threshold'])}", "threshold"))
        colour = STATUS_DOT.get(e["status"], "#57606a")
        strip = svg.interval_strip(e["macro_f1"], e["ci"], refs, color=colour,
                                   label=f"{e['gate']}: macro-F1 {fmt.number(e['macro_f1'])} "
                                         f"{fmt.interval(e['ci'])}")
        out.append(f'<tr data-gate="{svg.esc(e["gate"])}"><td><a href="#{svg.esc(anchor(e["gate"]))}">'
                   f'{esc(e["gate"])}</a><br><span class="st-{esc(e["status"])}">{esc(e["status"])}'
                   f'</span></td><td>{esc(e["model"])}</td><td class="num">{fmt.number(e["macro_f1"])}'
                   f'</td><td class="num">{fmt.interval(e["ci"])}</td><td class="strip">{strip}</td></tr>')
    out.append("</table>")
    out.append(svg.legend([("macro-F1 (dot) and its 95% CI (bar)", "#0969da", "")]
                          + [(lbl, *svg.STYLES[k]) for lbl, k in (
                              ("majority baseline", "baseline"), ("chance (uniform guessing)", "chance"),
                              ("threshold", "threshold"))]))
    out.append("</figure>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# history across runs
# ---------------------------------------------------------------------------------------------


def _scores(run: RunSummary) -> dict[str, float]:
    out = {}
    for gate, rec in run.gates.items():
        found = None if gate == "decision" else classification(rec.get("metrics"))
        if found is not None and num(found[1].get("macro_f1")) is not None:
            out[gate] = num(found[1]["macro_f1"])
    return out


def history(runs: list[RunSummary], current: str | None) -> str:
    """The runs in the log grouped by dataset (the current run's first), each group with its
    runs (newest first), each model's macro-F1 and its trend: runs on different data are never
    drawn as one line (HTML)."""
    if not runs:
        return '<p class="none">no runs in the log</p>'
    groups: dict[str, list[RunSummary]] = {}
    for r in runs:
        groups.setdefault(r.data or "(unknown data)", []).append(r)
    mine = next((r.data or "(unknown data)" for r in runs if r.run_id == current), None)
    order = sorted(groups, key=lambda d: (d != mine, -len(groups[d])))
    if len(order) == 1:
        return _history(runs, current)
    return "".join(f'<h3 data-dataset="{esc(d)}">data: {esc(d)} ({len(groups[d])} run'
                   f'{"s" if len(groups[d]) > 1 else ""})</h3>' + _history(groups[d], current)
                   for d in order)


def _history(runs: list[RunSummary], current: str | None) -> str:
    """One dataset's runs: the table and the trend."""
    shown = runs[-MAX_HISTORY_RUNS:]
    scores = [_scores(r) for r in shown]
    gates = sorted({g for s in scores for g in s}, key=gate_sort_key)
    # long gate names break after their underscores instead of widening the table
    head = "".join(f"<th>{esc(g).replace('_', '_<wbr>')}</th>" for g in gates)
    out = ['<div class="scroll"><table class="history"><tr><th rowspan="2">#</th>'
           '<th rowspan="2">run, started</th><th rowspan="2">profile, data</th>'
           '<th rowspan="2">gates</th>'
           + (f'<th colspan="{len(gates)}">macro-F1 (pooled out-of-fold)</th>' if gates else "")
           + f'<th rowspan="2">time</th></tr><tr>{head}</tr>']
    first = len(runs) - len(shown) + 1
    for i, (run, sc) in reversed(list(enumerate(zip(shown, scores)))):
        statuses = "<br>".join(f'<span class="st-{esc(s)}">{n} {esc(s)}</span>'
                               for s, n in run.counts.items())
        cells = "".join(f'<td class="num">{fmt.number(sc.get(g))}</td>' for g in gates)
        cls = ' class="current"' if run.run_id == current else ""
        out.append(f'<tr{cls}><td class="num">{first + i}</td><td>{esc(run.run_id)}<br>'
                   f'<span class="meta">{fmt.local_time(run.started)}</span></td>'
                   f'<td>{esc(run.profile)}<br><span class="meta">{esc(run.data)}</span></td>'
                   f'<td class="small">{statuses}</td>{cells}'
                   f'<td class="num">{fmt.human_duration(run.duration_s)}</td></tr>')
    out.append("</table></div>")
    if len(runs) > len(shown):
        out.append(f'<p class="meta">the newest {len(shown)} of {len(runs)} runs</p>')
    if len(shown) < 2:
        out.append('<p class="none">one run in the log: a trend needs two</p>')
        return "".join(out)
    series = []
    for j, g in enumerate(gates):
        pts = [(first + i, s[g]) for i, s in enumerate(scores) if g in s]
        titles = [f"{g} in run #{first + i} ({shown[i].run_id}): {fmt.number(s[g])}"
                  for i, s in enumerate(scores) if g in s]
        if pts:
            series.append(svg.Series(g, pts, svg.PALETTE[j % len(svg.PALETTE)], titles))
    refs = []
    newest = next((r for r in reversed(shown) if _scores(r)), None)
    if newest is not None:
        for rec in newest.gates.values():
            found = classification(rec.get("metrics"))
            base = found[1].get("majority_baseline") if found else None
            if isinstance(base, dict) and num(base.get("macro_f1")) is not None:
                refs.append(svg.Ref(num(base["macro_f1"]), f"majority baseline of the newest run: "
                                    f"{fmt.number(base['macro_f1'])}", "baseline"))
                chance = chance_macro_f1(found[1])
                if chance is not None:
                    refs.append(svg.Ref(chance, f"chance (uniform guessing): {fmt.number(chance)}",
                                        "chance"))
                break
    step = max(1, len(shown) // 8)
    ticks = [(first + i, f"#{first + i}") for i in range(0, len(shown), step)]
    body = svg.line_chart(series, refs, x_label="run (oldest to newest)", y_label="macro-F1",
                          y_range=(0.0, 1.0), x_ticks=ticks, chart="trend", width=640)
    out.append(_figure("Macro-F1 of each model across the runs in the log",
                       [(body, refs, [(s.label, s.color, "") for s in series])], "trend"))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# the decision
# ---------------------------------------------------------------------------------------------


def decision_box(rec: dict[str, Any], card_href: str | None) -> str:
    """The "deploy this" box: the recommended model (or nothing) with its expected macro-F1
    and CI, a link to its model card, the models indistinguishable from it and those not
    eligible (HTML)."""
    m = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    name = m.get("recommended")
    cands = m.get("candidates") if isinstance(m.get("candidates"), dict) else {}
    out = [f'<section id="decision" class="decision"><h2>Deploy this</h2>']
    if name:
        e = m.get("expected") or {}
        model = (cands.get(name) or {}).get("model") or name
        link = (f' · <a href="{esc(card_href)}">model card</a>' if card_href else
                " · not exported in this run (run with exports on: the default outside smoke, "
                "<code>--export-models</code> there)")
        out.append(f'<p class="deploy"><strong>{esc(name)}</strong> ({esc(model)}): expected '
                   f'macro-F1 <strong>{fmt.number(e.get("macro_f1"))}</strong> '
                   f'{fmt.interval(e.get("macro_f1_ci"))} on {esc(e.get("n_windows"))} scored '
                   f'windows x {esc(e.get("n_seeds"))} seed(s){link}</p>')
        others = [n for n in m.get("indistinguishable") or [] if n != name]
        out.append(f'<p>Indistinguishable from it: {esc(", ".join(others) or "none")}'
                   + (" (the simplest is recommended, gates.parsimony_order)" if others else "")
                   + "</p>")
    else:
        out.append(f'<p class="deploy"><strong>Deploy nothing.</strong> {esc(rec.get("reason"))}'
                   f'</p>')
    kept = set(m.get("indistinguishable") or [])
    out_of_set = {k: v for k, v in cands.items() if isinstance(v, dict) and v.get("eligible")
                  and k not in kept and k != name}
    if out_of_set:
        out.append("<p>Out of the set: " + "; ".join(
            f"<b>{esc(k)}</b>: {esc(v.get('why'))}" for k, v in out_of_set.items()) + "</p>")
    left = {k: v for k, v in cands.items() if isinstance(v, dict) and not v.get("eligible")}
    if left:
        out.append("<p>Not eligible: " + "; ".join(f"<b>{esc(k)}</b>: {esc(v.get('why'))}"
                                                  for k, v in left.items()) + "</p>")
    out.append(f'<p class="meta">{esc(m.get("method"))}; per-window loss: {esc(m.get("loss"))}'
               f"</p>")
    out.append(forest_plot(m.get("steps") or {}))
    out.append("</section>")
    return "".join(out)


def forest_plot(steps: dict[str, Any]) -> str:
    """What each step bought: one row per paired macro-F1 difference (new minus reference),
    its CI as a bar around the dot, against the zero line (HTML + SVG)."""
    rows = [(k, v) for k, v in steps.items() if isinstance(v, dict) and fmt.is_interval(
        v.get("delta_ci"))]
    if not rows:
        return '<p class="none">no step of this run has both of its models to compare</p>'
    lo = min(-0.1, min(v["delta_ci"][0] for _, v in rows))
    hi = max(0.1, max(v["delta_ci"][1] for _, v in rows))
    zero = [svg.Ref(0.0, "no difference", "chance")]
    out = ['<figure class="figure" data-figure="forest"><figcaption>What each step bought: '
           'paired macro-F1 difference (new minus reference) with its CI on the same scored '
           'windows</figcaption><table class="models"><tr><th>step</th><th>compares</th>'
           f'<th>delta</th><th>CI</th><th>outcome</th><th class="strip">'
           f'{svg.axis_strip(lo, hi)}</th></tr>']
    colour = {"helped": "#1a7f37", "hurt": "#cf222e", "inconclusive": "#57606a"}
    for label, v in rows:
        strip = svg.interval_strip(v.get("delta"), v["delta_ci"], zero, lo=lo, hi=hi,
                                   color=colour.get(v.get("outcome"), "#57606a"),
                                   label=f"{label}: {v.get('text')}")
        out.append(f'<tr data-step="{esc(label)}"><td>{esc(label)}</td><td>{esc(v.get("new"))} '
                   f'vs {esc(v.get("reference"))}<br><span class="meta">{esc(v.get("what"))}'
                   f'</span></td><td class="num">{fmt.number(v.get("delta"), "+.3f")}</td>'
                   f'<td class="num">{fmt.interval(v["delta_ci"])}</td>'
                   f'<td>{esc(v.get("outcome"))}</td><td class="strip">{strip}</td></tr>')
    out.append("</table></figure>")
    return "".join(out)
