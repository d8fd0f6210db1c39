"""The terminal summary: the decision first, then one row per gate (status, the rule its status
came from, time, reason) and the count of each status."""

from __future__ import annotations

from typing import Any

from moola.report import fmt

STATUS_MARK = {"passed": "PASS", "failed": "FAIL", "warning": "WARN",
               "inconclusive": "INCONCLUSIVE", "skipped": "SKIP"}
COUNTED = (("passed", "passed"), ("inconclusive", "inconclusive"), ("warning", "warned"),
           ("failed", "failed"), ("skipped", "skipped"))


def rule_text(rec: dict[str, Any]) -> str | None:
    """The rule a record's status came from, so that no inconclusive or failed row reads like a
    pass: a comparison's CI against its bound ("delta_f1 CI -0.193..+0.004 straddles 0.000"), a
    failed threshold negated ("skill_p 0.21, not < 0.010"), else the key metric."""
    km, cmp = rec.get("key_metric"), rec.get("comparison")
    km, cmp = (km if isinstance(km, dict) else {}), (cmp if isinstance(cmp, dict) else {})
    status = rec.get("status")
    if isinstance(cmp.get("vs_random_encoder"), dict) and status != "passed":  # gate 3: the encoder's comparison
        cmp = dict(cmp["vs_random_encoder"], _name="probe vs random encoder")
        km = {"name": cmp["_name"], "threshold": 0.0, "op": ">"}
    elif isinstance(cmp.get("pretraining"), dict):  # gate 4: pretraining's own control
        cmp = cmp["pretraining"]
    ci, thr, name = cmp.get("delta_ci"), fmt.num(km.get("threshold")), km.get("name")
    if status == "failed" and ci and cmp.get("outcome") not in (None, "failed"):
        return "another rule failed (see the reason)"  # not the comparison, which held
    if ci and None not in ci and cmp.get("builds_on") and ci[1] < 0 and status == "failed":
        # failed for being significantly worse than what it builds on (moola.approval)
        return (f"delta_f1 vs {cmp['builds_on']} CI {fmt.number(ci[0], '+.3f')}.."
                f"{fmt.number(ci[1], '+.3f')} below +0.000")
    if ci and thr is not None and None not in ci:
        lo, hi = ci
        if name == "drop_pp":  # gate 5 states its bound as a drop in points
            bound, label = -thr / 100, f"delta_f1 (drop bound {fmt.number(thr, '.1f')} pp)"
        else:
            bound, label = thr, str(name)
        where = "above" if lo > bound else "below" if hi < bound else "straddles"
        return (f"{label} CI {fmt.number(lo, '+.3f')}..{fmt.number(hi, '+.3f')} {where} "
                f"{fmt.number(bound, '+.3f')}")
    text = fmt.key_metric(rec)
    if text and status == "failed" and km.get("op"):
        if _holds(km):  # the key metric is fine: the status came from another rule
            return f"{text}; another rule failed (see the reason)"
        op = fmt.OPS_TEXT.get(km["op"], km["op"])
        text = text.replace(f" {op} ", f", not {op} ", 1)
    return text


def _holds(km: dict[str, Any]) -> bool:
    """Whether a key metric satisfies its own threshold (value op threshold)."""
    v, t, op = fmt.num(km.get("value")), fmt.num(km.get("threshold")), km.get("op")
    if v is None or t is None:
        return False
    return {"<": v < t, "<=": v <= t, ">": v > t, ">=": v >= t}.get(op, False)


def format_summary(records: list[dict[str, Any]], reason_width: int = 90) -> list[str]:
    """Lines of a fixed-width table, one row per gate record (the decision has its own block,
    :func:`format_decision`), reasons shortened to fit, then the count of each status."""
    rows = [("gate", "status", "rule behind the status", "time", "reason")]
    gates = [r for r in records if r.get("gate") != "decision"]
    for r in gates:
        rows.append((str(r.get("gate", "?")),
                     STATUS_MARK.get(r.get("status"), fmt.text(r.get("status"))),
                     rule_text(r) or "-", fmt.human_duration(r.get("duration_s")),
                     fmt.shorten(fmt.text(r.get("reason")), reason_width)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out = []
    for i, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
        if i == 0:
            out.append("-" * (sum(widths) + 8 + min(reason_width, 40)))
    out.append(count_line(gates))
    return out


def count_line(records: list[dict[str, Any]]) -> str:
    """'gates: 3 passed, 4 inconclusive, 1 warned, 0 failed, 0 skipped' over the gates (the
    decision is counted apart: it is the answer, not a gate's verdict)."""
    n = {s: sum(r.get("status") == s for r in records) for s, _ in COUNTED}
    return "gates: " + ", ".join(f"{n[s]} {word}" for s, word in COUNTED)


def format_decision(rec: dict[str, Any], width: int = 100) -> list[str]:
    """The decision's block: what to deploy (or nothing), with its expected macro-F1 and CI,
    the models indistinguishable from it, and what each step bought."""
    m = rec.get("metrics") or {}
    name = m.get("recommended")
    lines = []
    if name:
        e = m.get("expected") or {}
        ci = e.get("macro_f1_ci") or [None, None]
        model = ((m.get("candidates") or {}).get(name) or {}).get("model") or name
        lines.append(f"DEPLOY {name} ({model}): expected macro-F1 {fmt.number(e.get('macro_f1'))}"
                     f" ({fmt.percent(e.get('ci_level'))} CI {fmt.number(ci[0])}-"
                     f"{fmt.number(ci[1])}) on {e.get('n_windows')} scored windows x "
                     f"{e.get('n_seeds')} seed{'' if e.get('n_seeds') == 1 else 's'}")
        others = [n for n in m.get("indistinguishable") or [] if n != name]
        lines.append("  indistinguishable from it: " + (
            f"{', '.join(others)} (the simplest is recommended: gates.parsimony_order)"
            if others else "none"))
    else:
        lines.append(f"DEPLOY NOTHING: {fmt.shorten(fmt.text(rec.get('reason')), width)}")
    cands = m.get("candidates") or {}
    kept = set(m.get("indistinguishable") or [])
    out = [f"{k} ({v.get('why')})" for k, v in cands.items()
           if v.get("eligible") and k not in kept and k != name]
    if out:
        lines.append("  out of the set: " + fmt.shorten("; ".join(out), width))
    left = [f"{k} ({v.get('why')})" for k, v in cands.items() if not v.get("eligible")]
    if left:
        lines.append("  not eligible: " + fmt.shorten("; ".join(left), width))
    steps = m.get("steps") or {}
    if steps:
        lines.append("  what each step bought (macro-F1, new minus reference, paired CI):")
        w = max(len(k) for k in steps)
        for label, c in steps.items():
            lo, hi = c.get("delta_ci") or [None, None]
            lines.append(f"    {label.ljust(w)}  {fmt.number(c.get('delta'), '+.3f')} "
                         f"(CI {fmt.number(lo, '+.3f')} to {fmt.number(hi, '+.3f')})  "
                         f"{c.get('outcome')}: {c.get('new')} vs {c.get('reference')}")
    return lines
