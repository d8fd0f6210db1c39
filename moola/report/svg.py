"""Inline SVG charts for the HTML report: line charts with reference lines, and the interval
strip of one model's score with its CI against the baselines.

The page draws its own charts, so every one can carry the lines a verdict was judged against
(threshold, majority baseline, chance, the compared model, the freeze/unfreeze points), the page
stays one self-contained file without matplotlib, and titles and legends are HTML text that
wraps instead of being cut off. Each reference line is an element with ``class="ref <kind>"``
and ``data-label``, so a test (or a person's devtools) can find it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Sequence

# kind -> (colour, dash pattern); the page's legend shows the same swatches
STYLES = {
    "baseline": ("#57606a", "6 4"),  # majority class, linear interpolation
    "chance": ("#8c959f", "2 3"),
    "threshold": ("#cf222e", "6 3"),
    "reference": ("#8250df", "9 3 2 3"),  # the model a gate is compared with
    "own": ("#1a7f37", "3 3"),  # this gate's pooled out-of-fold score
    "schedule": ("#9a6700", "1 3"),  # freeze / unfreeze points
}
PALETTE = ("#0969da", "#bc4c00", "#1a7f37", "#8250df", "#cf222e", "#9a6700", "#1b7c83", "#57606a")


@dataclass
class Series:
    """One curve: (x, y) points in x order."""

    label: str
    points: list[tuple[float, float]]
    color: str = PALETTE[0]
    titles: list[str] = field(default_factory=list)  # hover text per point (optional)


@dataclass
class Ref:
    """A horizontal (`axis` "y") or vertical (`axis` "x") reference line at `at`."""

    at: float
    label: str
    kind: str = "baseline"
    axis: str = "y"


@dataclass
class Span:
    """A shaded range of x (e.g. the epochs the encoder stays frozen)."""

    x0: float
    x1: float
    label: str


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_text(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def line_chart(series: Sequence[Series], refs: Sequence[Ref] = (), spans: Sequence[Span] = (),
               *, x_label: str, y_label: str, y_range: tuple[float, float] | None = None,
               x_ticks: Sequence[tuple[float, str]] | None = None, best: tuple[float, float] | None = None,
               chart: str = "line", width: int = 520, height: int = 280) -> str:
    """An ``<svg>`` line chart; `best` marks one point (x, y) with a star."""
    xs = [x for s in series for x, _ in s.points] + [r.at for r in refs if r.axis == "x"] \
        + [v for sp in spans for v in (sp.x0, sp.x1)]
    ys = [y for s in series for _, y in s.points] + [r.at for r in refs if r.axis == "y"]
    if not xs or not ys:
        return ""
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y_range is None:
        y0, y1 = min(ys), max(ys)
        pad = (y1 - y0) * 0.08 or abs(y1) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    else:
        y0, y1 = y_range
    y_ticks = nice_ticks(y0, y1)
    # room for the longest tick label (about 6.5 px a character at 11 px) and the axis title
    left = 30 + int(6.5 * max(len(_tick_text(t)) for t in y_ticks))
    right, top, bottom = 12, 10, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (min(max(y, y0), y1) - y0) / (y1 - y0)) * ph

    out = [f'<svg class="chart" data-chart="{esc(chart)}" viewBox="0 0 {width} {height}" '
           f'role="img" xmlns="http://www.w3.org/2000/svg">']
    for sp in spans:
        out.append(f'<rect class="span" data-label="{esc(sp.label)}" x="{sx(sp.x0):.1f}" y="{top}" '
                   f'width="{max(0.0, sx(sp.x1) - sx(sp.x0)):.1f}" height="{ph}" fill="#fff8c5">'
                   f"<title>{esc(sp.label)}</title></rect>")
    # axes and grid
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                   f'fill="#57606a">{esc(_tick_text(t))}</text>')
    whole = all(float(x).is_integer() for s in series for x, _ in s.points)  # epochs, runs
    ticks = x_ticks if x_ticks is not None else [(t, _tick_text(t)) for t in nice_ticks(x0, x1, 6)
                                                 if float(t).is_integer() or not whole]
    for t, label in ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" '
                   f'stroke="#57606a"/><text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" '
                   f'font-size="11" fill="#57606a">{esc(label)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" font-size="12" '
               f'fill="#1f2328">{esc(x_label)}</text>')
    out.append(f'<text transform="translate(13,{top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
               f'font-size="12" fill="#1f2328">{esc(y_label)}</text>')
    # reference lines under the curves
    for r in refs:
        colour, dash = STYLES.get(r.kind, STYLES["baseline"])
        if r.axis == "x":
            x = sx(r.at)
            xy = f'x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}"'
        else:
            y = sy(r.at)
            xy = f'x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"'
        out.append(f'<line class="ref {esc(r.kind)}" data-label="{esc(r.label)}" {xy} '
                   f'stroke="{colour}" stroke-width="1.6" stroke-dasharray="{dash}">'
                   f"<title>{esc(r.label)}</title></line>")
    for s in series:
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        out.append(f'<polyline class="series" data-label="{esc(s.label)}" points="{pts}" fill="none" '
                   f'stroke="{s.color}" stroke-width="1.8"/>')
        for i, (x, y) in enumerate(s.points):
            tip = s.titles[i] if i < len(s.titles) else f"{s.label}: {y:.4g} at {x:g}"
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6" fill="{s.color}">'
                       f"<title>{esc(tip)}</title></circle>")
    if best is not None:
        out.append(f'<text class="best" x="{sx(best[0]):.1f}" y="{sy(best[1]) + 5:.1f}" '
                   f'text-anchor="middle" font-size="16" fill="#cf222e">★</text>')
    out.append("</svg>")
    return "".join(out)


def interval_strip(value: float | None, ci: Sequence[float] | None, refs: Sequence[Ref] = (),
                   *, color: str = PALETTE[0], lo: float = 0.0, hi: float = 1.0,
                   width: int = 300, height: int = 26, label: str = "") -> str:
    """One row of a side-by-side chart: the value as a dot, its CI as a bar, and a short tick
    for each reference (majority baseline, chance) on a shared [lo, hi] scale."""
    pad = 8

    def sx(x: float) -> float:
        return pad + (min(max(x, lo), hi) - lo) / (hi - lo) * (width - 2 * pad)

    mid = height / 2
    out = [f'<svg class="chart strip" data-chart="interval" viewBox="0 0 {width} {height}" '
           f'role="img" xmlns="http://www.w3.org/2000/svg"><title>{esc(label)}</title>',
           f'<line x1="{pad}" x2="{width - pad}" y1="{mid}" y2="{mid}" stroke="#eaeef2"/>']
    for r in refs:
        colour, dash = STYLES.get(r.kind, STYLES["baseline"])
        x = sx(r.at)
        out.append(f'<line class="ref {esc(r.kind)}" data-label="{esc(r.label)}" x1="{x:.1f}" '
                   f'x2="{x:.1f}" y1="2" y2="{height - 2}" stroke="{colour}" stroke-width="2" '
                   f'stroke-dasharray="{dash}"><title>{esc(r.label)}</title></line>')
    if ci is not None and len(ci) == 2:
        a, b = sx(ci[0]), sx(ci[1])
        out.append(f'<line class="ci" x1="{a:.1f}" x2="{b:.1f}" y1="{mid}" y2="{mid}" '
                   f'stroke="{color}" stroke-width="5" stroke-opacity="0.35" stroke-linecap="round"/>')
    if value is not None:
        out.append(f'<circle class="value" cx="{sx(value):.1f}" cy="{mid}" r="5" fill="{color}"/>')
    out.append("</svg>")
    return "".join(out)


def axis_strip(lo: float = 0.0, hi: float = 1.0, width: int = 300, height: int = 18) -> str:
    """The tick labels of :func:`interval_strip`'s scale, for a header or footer row."""
    pad = 8
    out = [f'<svg class="chart axis" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    for t in nice_ticks(lo, hi, 5):
        x = pad + (t - lo) / (hi - lo) * (width - 2 * pad)
        out.append(f'<text x="{x:.1f}" y="{height - 5}" text-anchor="middle" font-size="11" '
                   f'fill="#57606a">{esc(_tick_text(t))}</text>')
    out.append("</svg>")
    return "".join(out)


def legend(items: Sequence[tuple[str, str, str]]) -> str:
    """An HTML legend: (label, colour, dash pattern or "" for a solid line) per item."""
    out = ['<ul class="legend">']
    for label, colour, dash in items:
        sw = (f'<svg width="26" height="10" aria-hidden="true"><line x1="1" x2="25" y1="5" y2="5" '
              f'stroke="{colour}" stroke-width="2.2"'
              + (f' stroke-dasharray="{dash}"' if dash else "") + "/></svg>")
        out.append(f"<li>{sw} {esc(label)}</li>")
    out.append("</ul>")
    return "".join(out)


def ref_legend(refs: Sequence[Ref]) -> list[tuple[str, str, str]]:
    """Legend items of reference lines, in their styles."""
    return [(r.label, *STYLES.get(r.kind, STYLES["baseline"])) for r in refs]
