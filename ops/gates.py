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


def evaluate(rules: list[dict], candidate: dict, champion: dict | None,
             model: str | None = None, *, sources: dict | None = None,
             champion_sources: dict | None = None, unmeasured: str = "") -> list[GateResult]:
    """Judge a candidate's metrics (and the champion's, for comparisons) against every rule
    that applies to ``model``; ``sources`` say which figures were measured."""
    results = []
    for rule in parse_rules(rules):
        if "model" in rule and rule["model"] != model:
            continue
        metric = rule["metric"]
        kind = next(k for k in RULE_KINDS if k in rule)
        threshold = float(rule[kind])
        value = _number(candidate, metric)
        best = _number(champion, metric) if champion is not None else None
        origin = {"source": (sources or {}).get(metric, "declared"),
                  "champion_source": (champion_sources or {}).get(metric, "declared")
                  if best is not None else ""}
        if unmeasured:
            results.append(GateResult(metric, kind, threshold, None, best, False, unmeasured,
                                      source="", champion_source=origin["champion_source"]))
            continue
        if value is None:
            results.append(GateResult(metric, kind, threshold, None, best, False,
                                      f"{metric} was neither measured nor recorded with this "
                                      "version" if sources else
                                      f"{metric} was not recorded with this version",
                                      source=""))
            continue
        if kind == "min":
            passed = _within(threshold, value)
            detail = f"{metric} {value:.4g} {'≥' if passed else '<'} {threshold:.4g}"
        elif kind == "max":
            passed = _within(value, threshold)
            detail = f"{metric} {value:.4g} {'≤' if passed else '>'} {threshold:.4g}"
        elif best is None:
            passed = True
            detail = f"no champion recorded {metric}: nothing to compare with"
        elif kind == "max_drop":
            drop = best - value
            passed = _within(drop, threshold)
            detail = (f"{metric} {value:.4g} vs champion {best:.4g}: "
                      + (f"drop {drop:.4g} {'≤' if passed else '>'} {threshold:.4g}" if drop > 0
                         else "not worse"))
        else:
            rise = value - best
            passed = _within(rise, threshold)
            detail = (f"{metric} {value:.4g} vs champion {best:.4g}: "
                      + (f"rise {rise:.4g} {'≤' if passed else '>'} {threshold:.4g}" if rise > 0
                         else "not worse"))
        results.append(GateResult(metric, kind, threshold, value, best, passed, detail,
                                  **origin))
    return results
