"""Numbers in text that people read: three significant figures, thousands separated.

The portal's ``num`` template filter follows the same rule; reasons and details written in
``ops`` (a rollout's analysis, a gate's verdict) use ``figure`` so a log line reads
"1,270 >= 100 needed", never "1268.23 >= 100 needed".
"""

from __future__ import annotations

import math


def figure(value: float, digits: int = 3) -> str:
    """1268.23 -> "1,270"; 0.011213636 -> "0.0112"; 1.6958 -> "1.7"; 2.0 -> "2"."""
    number = float(value)
    if number == 0 or not math.isfinite(number):
        return "0" if number == 0 else str(number)
    magnitude = math.floor(math.log10(abs(number)))
    if magnitude < -4:  # 4.8e-18, not twenty zeros
        return f"{number:.{digits}g}"
    rounded = round(number, digits - 1 - magnitude)
    if abs(rounded) >= 10 ** digits or float(rounded).is_integer():
        return f"{int(round(rounded)):,}"
    decimals = max(digits - 1 - magnitude, 0)
    return f"{rounded:,.{decimals}f}".rstrip("0").rstrip(".")


def seconds(value: float) -> str:
    """A duration as people read it: 0.0112 -> "11.2 ms", 1.5 -> "1.5 s"."""
    value = float(value)
    return f"{figure(value * 1000)} ms" if abs(value) < 1 else f"{figure(value)} s"
