"""Numbers, class labels and model outputs in words a stakeholder reads. No Django.

The rules are the templates' (``portal/web/templatetags/modelgate.py``) and
``ops.numbers``': three significant figures (``num``), shares as percentages (``percent``),
so a sentence written in Python and a number shown by a template agree.

An explainer's ``output`` is machine text: ``"log-odds of class 1"``, ``"probability of
class 1"`` or ``"predicted value"``. ``Output.parse`` reads it; with the model's class labels
(``{"0": "malignant", "1": "benign"}``) it says what the values mean in plain words, and
turns a score on the log-odds scale into a probability with the logistic function.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

LOG_ODDS = "log-odds"
PROBABILITY = "probability"
VALUE = "value"


def num(value, digits: int = 3) -> str:
    """1268.23 -> "1,270"; 0.011213 -> "0.0112"; 1.6958e+00 -> "1.7"; 2.0 -> "2" (the rule
    of ``ops.numbers.figure`` and the templates' ``num``)."""
    from ops.numbers import figure

    if value is None:
        return "—"
    number = float(value)
    if math.isfinite(number) and number.is_integer():
        return f"{int(number):,}"
    return figure(number, digits)


def percent(share) -> str:
    """0.0123 -> "1.2%"; more digits below 1 % so a small share never reads 0 %."""
    value = float(share) * 100
    if value == 0:
        return "0%"
    return f"{value:.2f}%" if abs(value) < 1 else f"{value:.1f}%"


def logistic(score: float) -> float:
    """A log-odds score as a probability: 1 / (1 + e^−score), without overflow."""
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    z = math.exp(score)
    return z / (1.0 + z)


def label_of(value, labels: dict | None) -> str:
    """A class value as people name it: the model's label for it, or the value itself."""
    key = str(value)
    return str((labels or {}).get(key, key))


def quoted(text: str) -> str:
    return f"“{text}”"


@dataclass(frozen=True)
class Output:
    """What an explanation's values add up to, read from the explainer's ``output``."""

    scale: str  # log-odds | probability | value
    label: str | None  # the class explained, in people's words; None for a regressor

    @classmethod
    def parse(cls, output: str, labels: dict | None = None,
              target_class: str | None = None) -> Output:
        match = re.match(r"^(log-odds|probability) of class (.*)$", output or "")
        if match is None:
            return cls(VALUE, None)
        value = target_class if target_class not in (None, "") else match.group(2)
        return cls(match.group(1), label_of(value, labels))

    @property
    def classifier(self) -> bool:
        return self.scale != VALUE

    def probability(self, output: float) -> float | None:
        """The predicted probability of the class for one row's output (None: regressor)."""
        if self.scale == LOG_ODDS:
            return logistic(output)
        if self.scale == PROBABILITY:
            return min(max(float(output), 0.0), 1.0)
        return None

    @property
    def effect_unit(self) -> str:
        """How the values are measured, for an axis title."""
        if self.scale == LOG_ODDS:
            return f"effect on the model's score for {quoted(self.label)}"
        if self.scale == PROBABILITY:
            return f"effect on the probability of {quoted(self.label)}"
        return "effect on the predicted value"

    @property
    def how(self) -> str:
        """One sentence on the scale the values add up on."""
        if self.scale == LOG_ODDS:
            return (f"This model adds up evidence on a score scale (the logarithm of the odds "
                    f"of {quoted(self.label)}); a score becomes a probability through the "
                    "logistic function, 1 / (1 + e^−score): a score of 0 is 50%, +2 about "
                    "88%, −2 about 12%.")
        if self.scale == PROBABILITY:
            return (f"The effects are in probability of {quoted(self.label)}: +0.05 means five "
                    "percentage points more.")
        return "The effects are in the unit of the prediction."

    def average(self, outputs: list[float], base_value: float) -> str:
        """"On average the model gives “benign” a probability of 94%"."""
        if not self.classifier:
            mean = sum(outputs) / len(outputs) if outputs else base_value
            return f"On average the model predicts {num(mean)}."
        probabilities = [self.probability(o) for o in outputs] or [self.probability(base_value)]
        mean = sum(probabilities) / len(probabilities)
        return (f"On average the model gives {quoted(self.label)} a probability of "
                f"{percent(mean)}.")

    def verdict(self, output: float, labels: dict | None = None,
                classes: list | None = None) -> str:
        """One row's answer: "benign, probability 97.1%" (or the predicted value)."""
        probability = self.probability(output)
        if probability is None:
            return f"predicted value {num(output)}"
        other = _other_label(self.label, labels, classes)
        if probability >= 0.5 or other is None:
            return f"{self.label} (probability {percent(probability)})"
        return f"{other} (probability {percent(1 - probability)})"


def _other_label(label: str | None, labels: dict | None, classes: list | None) -> str | None:
    """The other class of a binary model, in words (None when unknown or not binary)."""
    names = [label_of(c, labels) for c in (classes or [])] or list((labels or {}).values())
    others = [str(n) for n in names if str(n) != label]
    return others[0] if len(others) == 1 else None
