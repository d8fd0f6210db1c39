"""``panel.html``: one self-contained page for a ``moola panel`` (see :mod:`moola.panel`).

Per gate: the sentence that says whether its verdict holds across seeds on each dataset, the
outcome counts per dataset, and the spread of its key metric (one dot per seed, inline SVG);
then every row (dataset x seed x gate) and every chain. Every piece of text is escaped and
every field may be missing.
"""

from __future__ import annotations

from typing import Any

from moola.report import fmt
from moola.report.html import CSS, STATUS_COLOURS, anchor, badge, esc

PANEL_CSS = """.sentence{margin:.3em 0;font-weight:600}.sentence.depends{color:#9a6700}
.sentence.crash{color:#cf222e}svg.strip{width:260px;height:22px;vertical-align:middle}
.st-crashed{color:#cf222e}pre.log{white-space:pre-wrap;font-size:.8em;max-height:12em;overflow:auto;
background:#f6f8fa;padding:6px}"""
COLOURS = {**STATUS_COLOURS, "crashed": ("#cf222e", "#ffebe9")}


def strip(values: list[float], lo: float, hi: float, statuses: list[str] | None = None) -> str:
    """One dot per seed on a line from `lo` to `hi` (the same scale for every dataset of a gate)."""
    w, pad = 260, 8
    span = (hi - lo) or 1.0
    dots = []
    for i, v in enumerate(values):
        x = pad + (v - lo) / span * (w - 2 * pad)
        colour = COLOURS.get((statuses or [""] * len(values))[i], ("#57606a", ""))[0]
        dots.append(f'<circle cx="{x:.1f}" cy="11" r="4" fill="{colour}" fill-opacity="0.7">'
                    f"<title>{esc(fmt.number(v))}</title></circle>")
    return (f'<svg class="strip" viewBox="0 0 {w} 22" role="img" aria-label="spread">'
            f'<line x1="{pad}" y1="11" x2="{w - pad}" y2="11" stroke="#d0d7de"/>'
            + "".join(dots) + "</svg>")


def gate_block(gate: str, summary: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """A gate's sentences, its outcome counts per dataset and its key metric's spread."""
    mine = [s for s in summary if s.get("gate") == gate]
    vals = [v for s in mine if s.get("key_metric") for v in s["key_metric"].get("values", [])]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    parts = [f'<section class="gate" id="{esc(anchor(gate))}"><h2>{esc(gate)}</h2>']
    for s in mine:
        cls = "crash" if "crashed" in s.get("counts", {}) else ("" if s.get("holds") else "depends")
        parts.append(f'<p class="sentence {cls}">{esc(s.get("sentence"))}</p>')
    statuses = [st for st in COLOURS if any(st in s.get("counts", {}) for s in mine)]
    parts.append('<div class="scroll"><table><tr><th>dataset</th><th>seeds</th>'
                 + "".join(f"<th>{badge(st)}</th>" for st in statuses)
                 + "<th>key metric: min / median / max</th><th>spread (one dot per seed)</th>"
                   "<th>pooled macro-F1: min / max</th></tr>")
    for s in mine:
        km, f1 = s.get("key_metric"), s.get("macro_f1")
        seeds_rows = [r for r in rows if r.get("gate") == gate and r.get("dataset") == s.get("dataset")]
        pts = [(fmt.num((r.get("key_metric") or {}).get("value")), r.get("status")) for r in seeds_rows
               if isinstance(r.get("key_metric"), dict)]
        pts = [(v, st) for v, st in pts if v is not None]
        parts.append(
            f"<tr><td>{esc(s.get('dataset'))}</td><td class=\"num\">{esc(s.get('seeds'))}</td>"
            + "".join(f'<td class="num">{esc(s.get("counts", {}).get(st, 0))}</td>' for st in statuses)
            + (f"<td>{esc(km.get('name'))} {esc(fmt.number(km.get('min')))} / "
               f"{esc(fmt.number(km.get('median')))} / {esc(fmt.number(km.get('max')))}</td>"
               if km else "<td>—</td>")
            + (f"<td>{strip([v for v, _ in pts], lo, hi, [st for _, st in pts])}</td>" if pts
               else "<td>—</td>")
            + (f'<td class="num">{esc(fmt.number(f1.get("min")))} / {esc(fmt.number(f1.get("max")))}</td>'
               if f1 else "<td>—</td>")
            + "</tr>")
    parts.append("</table></div></section>")
    return "\n".join(parts)


def rows_table(rows: list[dict[str, Any]]) -> str:
    out = ['<details><summary>every row (dataset x seed x gate)</summary><div class="scroll"><table>'
           "<tr><th>dataset</th><th>seed</th><th>gate</th><th>status</th><th>key metric</th>"
           "<th>pooled macro-F1 [CI]</th><th>reason</th><th>run id</th></tr>"]
    for r in rows:
        km = r.get("key_metric") if isinstance(r.get("key_metric"), dict) else None
        km_text = (f"{fmt.text(km.get('name'))} {fmt.number(km.get('value'))}" if km else fmt.DASH)
        f1 = fmt.number(r.get("macro_f1"))
        if fmt.is_interval(r.get("macro_f1_ci")):
            f1 += " " + fmt.interval(r["macro_f1_ci"])
        out.append(
            f"<tr><td>{esc(r.get('dataset'))}</td><td class=\"num\">{esc(r.get('seed'))}</td>"
            f"<td>{esc(r.get('gate'))}</td><td>{badge_any(r.get('status'))}</td><td>{esc(km_text)}</td>"
            f"<td class=\"num\">{esc(f1)}</td>"
            f"<td class=\"reason\">{esc(r.get('reason'))}</td><td>{esc(r.get('run_id'))}</td></tr>")
    out.append("</table></div></details>")
    return "\n".join(out)


def badge_any(status: Any) -> str:
    if status == "crashed":
        fg, bg = COLOURS["crashed"]
        return f'<span class="badge" style="color:{fg};background:{bg}">crashed</span>'
    return badge(status)


def chains_table(chains: list[dict[str, Any]]) -> str:
    out = ['<h2 id="chains">Chains</h2><div class="scroll"><table><tr><th>dataset</th><th>seed</th>'
           "<th>state</th><th>run id</th><th>recommended</th><th>wall</th><th>worker</th>"
           "<th>reports (on the worker)</th></tr>"]
    for c in chains:
        crashed = c.get("state") == "crashed"
        out.append(
            f"<tr><td>{esc(c.get('dataset'))}</td><td class=\"num\">{esc(c.get('seed'))}</td>"
            f"<td>{badge_any('crashed') if crashed else esc(c.get('state'))}</td>"
            f"<td>{esc(c.get('run_id'))}</td><td>{esc(c.get('recommended'))}</td>"
            f"<td class=\"num\">{esc(fmt.human_duration(c.get('wall_s')))}</td>"
            f"<td>{esc(c.get('worker'))}</td><td class=\"val\">{esc(c.get('reports'))}</td></tr>")
        if crashed and c.get("log_tail"):
            out.append(f'<tr><td colspan="8"><pre class="log">{esc_block(c["log_tail"])}</pre></td></tr>')
    out.append("</table></div>")
    return "\n".join(out)


def esc_block(text: str) -> str:
    """Escaped multi-line text (a log tail keeps its lines)."""
    import html

    return html.escape(str(text), quote=True)


def build_panel_html(panel: dict[str, Any]) -> str:
    """The page (a string) for a panel as :func:`moola.panel.build_panel` returns it."""
    p = panel.get("panel", {})
    summary, rows = panel.get("summary", []), panel.get("rows", [])
    gates = list(dict.fromkeys(s.get("gate") for s in summary))
    settings = p.get("settings") or {}
    said = [f"profile {settings.get('profile') or 'default'}"]
    if settings.get("k"):
        said.append(f"-k {settings['k']}")
    if settings.get("gates_config"):
        said.append(f"gates-config {settings['gates_config']}")
    depends = [s for s in summary if not s.get("holds")]
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>moola panel</title><style>{CSS}{PANEL_CSS}</style></head><body>",
        "<h1>moola panel</h1>",
        f'<p class="meta">{esc(len(p.get("datasets", [])))} dataset(s) x seeds '
        f'{esc(", ".join(map(str, p.get("seeds", []))))}; {esc("; ".join(said))}; '
        f'{esc(p.get("chains"))} chains ({esc(p.get("ran_now"))} run in the last call); '
        f'engine: {esc(p.get("engine"))}; written {esc(p.get("written_at"))}</p>',
        "<p>datasets: " + ", ".join(f"<code>{esc(d)}</code>" for d in p.get("datasets", [])) + "</p>",
        "<nav>" + " ".join(f'<a href="#{esc(anchor(g))}">{esc(g)}</a>' for g in gates)
        + ' <a href="#chains">chains</a></nav>',
    ]
    if depends:
        parts.append("<h2>Where the verdict does not hold</h2><ul>"
                     + "".join(f"<li>{esc(s.get('sentence'))}</li>" for s in depends) + "</ul>")
    elif summary:
        parts.append("<p>Every gate's verdict is the same at every seed on every dataset.</p>")
    parts += [gate_block(g, summary, rows) for g in gates]
    parts.append(rows_table(rows))
    parts.append(chains_table(panel.get("chains", [])))
    parts.append("</body></html>\n")
    return "\n".join(parts)
