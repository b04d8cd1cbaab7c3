"""Numbers, class labels and model outputs in words a stakeholder reads. No Django.

The rules are the templates' (``portal/web/templatetags/modelgate.py``) and
``ops.numbers``': three significant figures (``num``), shares as percentages (``percent``),
so a sentence written in Python and a number shown by a template agree.

An explainer's ``output`` is machine text: ``"log-odds of class 1"``, ``"probability of
class 1"``, ``"score of class 2"`` or ``"predicted value"``. ``Output.parse`` reads it; with
the model's class labels (``{"0": "malignant", "1": "benign"}``) it says what the values mean
in plain words, and turns a score on the log-odds scale into a probability with the logistic
function. A multiclass linear model's score (one of its softmax's inputs) is no log-odds:
it is never shown as a probability (decision 26).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

LOG_ODDS = "log-odds"
PROBABILITY = "probability"
SCORE = "score"  # a multiclass linear model's score for one class: no probability by itself
VALUE = "value"


def num(value, digits: int = 3) -> str:
    """1268.23 -> "1,270"; 0.011213 -> "0.0112"; 1.6958e+00 -> "1.7"; 2.0 -> "2" (the rule
    of ``ops.numbers`` and the templates' ``num``)."""
    from ops.numbers import number

    return "—" if value is None else number(value, digits)


def percent(share) -> str:
    """0.0123 -> "1.2%"; more digits below 1 % so a small share never reads 0 % (the rule
    of ``ops.numbers.percent`` and the templates' ``percent``)."""
    from ops.numbers import percent as shown

    return shown(share)


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

    scale: str  # log-odds | probability | score | value
    label: str | None  # the class explained, in people's words; None for a regressor

    @classmethod
    def parse(cls, output: str, labels: dict | None = None,
              target_class: str | None = None) -> Output:
        match = re.match(r"^(log-odds|probability|score) of class (.*)$", output or "")
        if match is None:
            return cls(VALUE, None)
        value = target_class if target_class not in (None, "") else match.group(2)
        return cls(match.group(1), label_of(value, labels))

    @property
    def classifier(self) -> bool:
        return self.scale != VALUE

    def probability(self, output: float) -> float | None:
        """The predicted probability of the class for one row's output (None: a regressor,
        or a multiclass score, whose probability depends on the other classes' scores)."""
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
        if self.scale == SCORE:
            return f"effect on the model's score for {quoted(self.label)}"
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
        if self.scale == SCORE:
            return (f"This model gives each class a score and predicts the highest; the "
                    f"effects add up to its score for {quoted(self.label)}. A higher score makes "
                    f"{quoted(self.label)} more likely, but a score is not a probability: that "
                    "depends on the other classes' scores too.")
        return "The effects are in the unit of the prediction."

    def average(self, outputs: list[float], base_value: float) -> str:
        """"On average the model gives “benign” a probability of 94%"."""
        if not self.classifier or self.scale == SCORE:
            mean = sum(outputs) / len(outputs) if outputs else base_value
            if self.scale == SCORE:
                return f"On average the model's score for {quoted(self.label)} is {num(mean)}."
            return f"On average the model predicts {num(mean)}."
        probabilities = [self.probability(o) for o in outputs] or [self.probability(base_value)]
        mean = sum(probabilities) / len(probabilities)
        return (f"On average the model gives {quoted(self.label)} a probability of "
                f"{percent(mean)}.")

    def verdict(self, output: float, labels: dict | None = None,
                classes: list | None = None, predicted=None) -> str:
        """One row's answer: "benign (probability 97.1%)" (or the predicted value). With
        more than two classes the explained class is one of many: the predicted class
        (``predicted``, the model's ``predict``) leads, the explained one's probability or
        score follows apart, "versicolor (probability of “virginica” 3.1%)"; without
        ``predicted``, only the latter."""
        if not self.classifier:
            return f"predicted value {num(output)}"
        names = _class_names(labels, classes)
        if len(names) > 2 or self.scale == SCORE:
            detail = self.of_class(output)
            return detail if predicted is None else f"{label_of(predicted, labels)} ({detail})"
        probability = self.probability(output)
        others = [n for n in names if n != self.label]
        if probability >= 0.5 or len(others) != 1:
            return f"{self.label} (probability {percent(probability)})"
        return f"{others[0]} (probability {percent(1 - probability)})"

    def of_class(self, output: float) -> str:
        """"probability of “virginica” 3.1%", or "score for “virginica” −1.2"."""
        if self.scale == SCORE:
            return f"score for {quoted(self.label)} {num(output)}"
        return f"probability of {quoted(self.label)} {percent(self.probability(output))}"


def _class_names(labels: dict | None, classes: list | None) -> list[str]:
    """The model's classes in words (its labels' when the classes are unknown)."""
    return [label_of(c, labels) for c in (classes or [])] or [str(n) for n in
                                                              (labels or {}).values()]
