"""How numbers, intervals, durations and key metrics read, in every report: the terminal summary
table, ``moola status`` and the HTML page all format through here.

Rules: unknown values (None, NaN, junk) read "—"; a value that rounds to zero never reads
"-0.000"; a tiny non-zero value (a p-value of 0.0005) keeps two significant digits instead of
rounding to "0.000"; lists are rounded element by element; dicts read ``key value, key value``,
never as Python or JSON text.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

DASH = "—"
# terminals get ASCII operators (a log file or a pipe may not be UTF-8); the page gets symbols
OPS_TEXT = {">=": ">=", "<=": "<=", ">": ">", "<": "<", "==": "=", "ge": ">=", "le": "<=",
            "gt": ">", "lt": "<"}
OPS_SYMBOL = {">=": "≥", "<=": "≤", ">": ">", "<": "<", "==": "=", "ge": "≥", "le": "≤",
              "gt": ">", "lt": "<"}


def num(x: Any) -> float | None:
    """A finite float from a number or numeric string; None otherwise (bools are not numbers)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def number(x: Any, spec: str | None = None, digits: int = 3) -> str:
    """One number as a person reads it.

    With `spec` (a format spec such as ``".4g"`` or ``"+.3f"``) that spec; otherwise integers
    as they are, with thousands separators from 10,000 (a seed 1017 is not "1,017"), floats
    `digits` decimals, values under 0.5e-`digits` (not zero) two significant digits and values
    of 1,000 or more one decimal. Never "-0.000".
    """
    if isinstance(x, int) and not isinstance(x, bool) and spec is None:
        return f"{x:,}" if abs(x) >= 10_000 else str(x)
    v = num(x)
    if v is None:
        return DASH
    if spec is not None:
        text = format(v, spec)
    elif v != 0 and abs(v) < 0.5 * 10 ** -digits:
        text = f"{v:.2g}"
    elif abs(v) >= 1000:
        text = f"{v:,.0f}" if v.is_integer() else f"{v:,.1f}"
    else:
        text = f"{v:.{digits}f}"
    return _unsigned_zero(text)


def _unsigned_zero(text: str) -> str:
    """"-0.000" and "+0.000" (a tiny value rounded away) read "0.000"."""
    return text.lstrip("+-") if num(text.rstrip("%")) == 0.0 else text


def integer(x: Any) -> str:
    """A count with thousands separators ("1,234"); "—" when unknown."""
    v = num(x)
    return DASH if v is None else f"{int(v):,}"


def percent(x: Any, digits: int = 0) -> str:
    """A share 0..1 as a percentage ("64%")."""
    v = num(x)
    return DASH if v is None else _unsigned_zero(f"{100 * v:.{digits}f}%")


def interval(ci: Any, digits: int = 3) -> str:
    """``[0.667, 0.827]`` for a two-number interval; "—" otherwise."""
    if is_interval(ci):  # fixed decimals: both ends line up, and a tiny end reads 0.000
        return f"[{number(ci[0], f'.{digits}f')}, {number(ci[1], f'.{digits}f')}]"
    return DASH


def is_interval(x: Any) -> bool:
    """Whether `x` is a pair of numbers (a confidence interval)."""
    return isinstance(x, (list, tuple)) and len(x) == 2 and all(num(c) is not None for c in x)


def human_duration(seconds: Any) -> str:
    """42 s, 12 min 5 s, 3 h 20 min, 2 d 4 h; "—" when unknown."""
    s = num(seconds)
    if s is None:
        return DASH
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec} s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def local_time(unix: Any) -> str:
    """``2026-12-02 03:46`` in the local time zone; "—" when unknown."""
    t = num(unix)
    if t is None:
        return DASH
    return _dt.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M")


def text(x: Any) -> str:
    """A value as one line of text; "—" for None or blank."""
    if x is None or (isinstance(x, str) and not x.strip()):
        return DASH
    return " ".join(str(x).split())


def is_interval_key(key: Any) -> bool:
    """Whether a field named `key` holds an interval (``ci``, ``delta_ci``, ...): a list of two
    numbers is an interval only by name (two seeds' scores are a pair of numbers too)."""
    return isinstance(key, str) and (key == "ci" or key.endswith("_ci"))


def is_precise_key(key: Any) -> bool:
    """Whether a field named `key` is an error or a ratio near 1 (``interp_mse``, ``val_loss``,
    ``ratio``), where the digits a gate judges lie beyond the third decimal (0.12146 vs
    0.12142): those keep four significant digits."""
    return isinstance(key, str) and any(w in key for w in ("mse", "loss", "ratio"))


def value(x: Any, digits: int = 3, key: Any = None) -> str:
    """Any recorded value as plain text: numbers by :func:`number` (four significant digits
    for :func:`is_precise_key` fields), booleans yes/no, lists element by element, dicts as
    ``key value; key value``; a field named like an interval (:func:`is_interval_key`) as
    ``[lo, hi]``."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if x is None:
        return DASH
    if isinstance(x, float) and is_precise_key(key):
        return number(x, ".4g")
    if isinstance(x, (int, float)):
        return number(x, digits=digits)
    if is_interval_key(key) and is_interval(x):
        return interval(x, digits)
    if isinstance(x, (list, tuple)):
        return ", ".join(value(v, digits, key) for v in x) if x else DASH
    if isinstance(x, dict):
        return "; ".join(f"{k} {value(v, digits, k)}" for k, v in x.items()) if x else DASH
    return text(x)


def key_metric(rec: dict[str, Any], symbols: bool = False) -> str | None:
    """``skill_p 0.0005 < 0.01`` from a record's ``key_metric`` (None when it has none)."""
    km = rec.get("key_metric")
    if not isinstance(km, dict) or km.get("value") is None:
        return None
    out = f"{text(km.get('name'))} {number(km.get('value'))}"
    if km.get("threshold") is not None:
        op = km.get("op")
        ops = OPS_SYMBOL if symbols else OPS_TEXT
        op = ops.get(op, op) if isinstance(op, str) and op else "vs"
        out += f" {op} {number(km.get('threshold'))}"
    return out


def shorten(s: str, width: int) -> str:
    """`s` cut to `width` characters, ending in "..." when cut."""
    if width <= 0:
        return ""
    return s if len(s) <= width else (s[: max(0, width - 3)] + "...")[:width]
