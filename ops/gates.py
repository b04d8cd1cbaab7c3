"""Release gates: metric rules a candidate version must pass before it may be approved.

Rules are plain dicts stored with an environment, e.g.::

    {"metric": "roc_auc", "min": 0.90}
    {"metric": "log_loss", "max": 0.25}
    {"metric": "roc_auc", "max_drop": 0.01}                  # vs the champion, higher is better
    {"metric": "rmse", "max_rise": 2.0}                       # vs the champion, lower is better
    {"metric": "r2", "min": 0.4, "model": "progression-regressor"}   # one model only

A rule without ``model`` applies to every model released to the environment.

A metric the candidate did not record fails its rule (an unmeasured model is not a safe one);
a comparison rule with no champion (the first release) passes and says so.

Each figure says where it came from (``sources``): "measured" by the portal on an evaluation
dataset, or "declared" by whoever uploaded the version. While a measurement is under way,
or when it failed, every rule fails with that reason (``unmeasured``): a declared number
must not pass where a measured one is coming.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

RULE_KINDS = ("min", "max", "max_drop", "max_rise")


class GateRuleError(ValueError):
    """A rule is malformed; the message names it."""


@dataclass(frozen=True)
class GateResult:
    metric: str
    rule: str
    threshold: float
    value: float | None
    champion: float | None
    passed: bool
    detail: str
    source: str = "declared"  # of the candidate's value: "measured" or "declared"
    champion_source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def parse_rules(rules) -> list[dict]:
    """Check a list of rules; raise ``GateRuleError`` naming the first bad one."""
    if not isinstance(rules, list):
        raise GateRuleError("gates must be a list of rules")
    for position, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("metric"), str):
            raise GateRuleError(f"gates[{position}] needs a metric name")
        kinds = [k for k in RULE_KINDS if k in rule]
        if len(kinds) != 1 or set(rule) - {"model"} != {"metric", kinds[0]}:
            raise GateRuleError(f"gates[{position}] ({rule.get('metric')}) needs exactly one of "
                                + ", ".join(RULE_KINDS))
        value = rule[kinds[0]]
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise GateRuleError(f"gates[{position}] ({rule['metric']}): {kinds[0]} must be a number")
        if "model" in rule and not isinstance(rule["model"], str):
            raise GateRuleError(f"gates[{position}] ({rule['metric']}): model must be a name")
    return rules


def _within(value: float, limit: float) -> bool:
    """``value <= limit``, forgiving float noise (0.97 - 0.95 is 0.020000000000000018)."""
    return value <= limit or math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def _number(metrics: dict, name: str) -> float | None:
    value = (metrics or {}).get(name)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class Evidence:
    """One side's figures for ``evaluate``: the metrics, where each came from ("measured" or
    "declared"), why the measurement is missing ("" when it is not), and which metrics count
    only as measured (those the portal measures, where an evaluation dataset exists)."""

    metrics: dict | None
    sources: dict | None = None
    unmeasured: str = ""
    measurable: frozenset = frozenset()

    def source(self, metric: str) -> str:
        return (self.sources or {}).get(metric, "declared")

    def refusal(self, metric: str, who: str) -> str:
        """Why this side's figure for ``metric`` cannot be judged, or ""."""
        if self.unmeasured:
            return self.unmeasured
        if metric in self.measurable and self.source(metric) != "measured":
            return (f"{metric} of {who} could not be measured on the evaluation data (e.g. "
                    "one class only in its labels, or no probabilities); a declared figure "
                    "is not judged where the portal measures")
        return ""


def _judge(metric: str, kind: str, threshold: float, value: float, best: float | None
           ) -> tuple[bool, str]:
    if kind == "min":
        passed = _within(threshold, value)
        return passed, f"{metric} {value:.4g} {'≥' if passed else '<'} {threshold:.4g}"
    if kind == "max":
        passed = _within(value, threshold)
        return passed, f"{metric} {value:.4g} {'≤' if passed else '>'} {threshold:.4g}"
    if best is None:
        return True, f"no champion recorded {metric}: nothing to compare with"
    change, word = (best - value, "drop") if kind == "max_drop" else (value - best, "rise")
    passed = _within(change, threshold)
    return passed, (f"{metric} {value:.4g} vs champion {best:.4g}: "
                    + (f"{word} {change:.4g} {'≤' if passed else '>'} {threshold:.4g}"
                       if change > 0 else "not worse"))


def evaluate(rules: list[dict], candidate: dict | Evidence, champion: dict | Evidence | None,
             model: str | None = None) -> list[GateResult]:
    """Judge a candidate's metrics (and the champion's, for comparisons) against every rule
    that applies to ``model``. Plain dicts are declared figures; ``Evidence`` says which
    were measured and which cannot be judged unmeasured."""
    mine = candidate if isinstance(candidate, Evidence) else Evidence(candidate)
    theirs = champion if isinstance(champion, Evidence) or champion is None \
        else Evidence(champion)
    results = []
    for rule in parse_rules(rules):
        if "model" in rule and rule["model"] != model:
            continue
        results.append(_result(rule, mine, theirs))
    return results


def _result(rule: dict, mine: Evidence, theirs: Evidence | None) -> GateResult:
    metric = rule["metric"]
    kind = next(k for k in RULE_KINDS if k in rule)
    threshold = float(rule[kind])
    value = _number(mine.metrics, metric)
    best = _number(theirs.metrics, metric) if theirs is not None else None
    compares = kind in ("max_drop", "max_rise") and theirs is not None
    origin = {"source": mine.source(metric) if value is not None else "",
              "champion_source": theirs.source(metric) if best is not None else ""}
    refusal = mine.refusal(metric, "the candidate") or (
        theirs.refusal(metric, "the version it is compared with") if compares else "")
    if refusal:
        return GateResult(metric, kind, threshold, value, best, False, refusal, **origin)
    if value is None:
        return GateResult(metric, kind, threshold, None, best, False,
                          f"{metric} was not recorded with this version", **origin)
    passed, detail = _judge(metric, kind, threshold, value, best)
    return GateResult(metric, kind, threshold, value, best, passed, detail, **origin)
