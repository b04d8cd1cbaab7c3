"""Numbers in text that people read: three significant figures, thousands separated.

The one rule of the portal: the templates' filters (``num``, ``ms``, ``percent`` in
``portal/web/templatetags/modelgate.py``), the explanations' words (``explainability.words``)
and reasons written in ``ops`` (a rollout's analysis, a gate's verdict) all call these, so
a log line reads "1,270 >= 100 needed", never "1268.23 >= 100 needed".

Counts are exact (``123,456``); a value that is not a finite number reads "—"; two values
compared in one sentence get the digits that tell them apart (``distinct``).
"""

from __future__ import annotations

import math

NOTHING = "—"
EXACT_UP_TO = 1e15  # integral floats below this are counts, shown whole


def figure(value: float, digits: int = 3) -> str:
    """1268.23 -> "1,270"; 0.011213636 -> "0.0112"; 1.6958 -> "1.7"; 2.0 -> "2"."""
    number = float(value)
    if not math.isfinite(number):
        return NOTHING
    if number == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(number)))
    if magnitude < -4 or abs(number) >= EXACT_UP_TO:  # 4.8e-18, 1.5e+30: no invented digits
        return f"{number:.{digits}g}"
    rounded = round(number, digits - 1 - magnitude)
    if abs(rounded) >= 10 ** digits or float(rounded).is_integer():
        return f"{int(round(rounded)):,}"
    decimals = max(digits - 1 - magnitude, 0)
    return f"{rounded:,.{decimals}f}".rstrip("0").rstrip(".")


def number(value, digits: int = 3) -> str:
    """Any number for people: ints and whole floats exact (counts), others ``figure``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < EXACT_UP_TO:
        return f"{int(value):,}"
    return figure(value, digits)


def distinct(first: float, second: float, digits: int = 3) -> tuple[str, str]:
    """Both values with the digits that tell them apart: (1.5004, 1.5) -> ("1.5004", "1.5"),
    never "1.5 > 1.5"."""
    for more in range(digits, 16):
        a, b = figure(first, more), figure(second, more)
        if a != b or float(first) == float(second):
            return a, b
    return repr(float(first)), repr(float(second))


def seconds(value: float) -> str:
    """A duration as people read it: 0.0112 -> "11.2 ms", 1.5 -> "1.5 s", 0.9996 -> "1 s"."""
    value = float(value)
    if not math.isfinite(value):
        return NOTHING
    shown = figure(value * 1000)
    if abs(float(shown.replace(",", ""))) < 1000:
        return f"{shown} ms"
    return f"{figure(value)} s"


def percent(share) -> str:
    """0.0123 -> "1.2%"; more digits below 1 %, "<0.01%" below that: a small share never
    reads 0 %."""
    value = float(share) * 100
    if not math.isfinite(value):
        return NOTHING
    if value == 0:
        return "0%"
    if abs(value) < 0.01:
        return "<0.01%" if value > 0 else ">-0.01%"
    return f"{value:.2f}%" if abs(value) < 1 else f"{value:.1f}%"
