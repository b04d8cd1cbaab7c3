"""What the rollout page shows beyond the rows themselves: a status line that follows the
plan last applied, the latest analysis in people's units, and the charts."""

from __future__ import annotations

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from explainability import charts
from ops import rollout
from ops.numbers import figure, seconds
from ops.rollout.plans import _label

SHARES = {"error_rate", "client_error_excess", "disagreement_rate", "prediction_shift"}
RATIOS = {"p99_latency_ratio", "prediction_spread_ratio"}
LIVE = {"progressing", "paused"}


def _shown(metric: str, value) -> str:
    """A value in the unit people read it in (the portal's ``num``, ``ms`` and ``percent``
    rules: three significant figures)."""
    if value is None:
        return "—"
    if metric in SHARES:
        return f"{figure(100 * value)}%"
    if metric == "p99_latency":
        return seconds(value)
    if metric in RATIOS:
        return f"{figure(value)}×"
    return figure(value)


def status_text(deployment) -> str:
    """The state's reason; for a live rollout whose reason predates its current step (rows
    written before reasons followed each plan), the step it is at."""
    state = deployment.state or {}
    reason = state.get("reason", "")
    if state.get("status") not in LIVE:
        return reason
    try:
        label = _label(rollout.RolloutSpec.from_dict(deployment.spec),
                       rollout.RolloutState.from_dict(state))
    except (KeyError, TypeError, ValueError, IndexError):
        return reason
    if label in reason:
        return reason
    if state.get("status") == "paused" and reason:  # "paused by alice": keep who and why
        return f"{reason} (at {label})"
    return f"at {label}"


def serving_now(events: list) -> dict | None:
    """The plan last applied (events oldest first): its shares and when."""
    last = next((e for e in reversed(events) if e.weights), None)
    if last is None:
        return None
    return {"at": last.created_at, "weights": sorted(last.weights.items(),
                                                    key=lambda kv: kv[0] != "candidate")}


def latest_analysis(events: list) -> dict | None:
    """The newest measurements in people's units, with when they were taken (a repeated
    check updates its event's measurements, each stamped with its own time)."""
    event = next((e for e in reversed(events) if e.measurements), None)
    if event is None:
        return None
    rows, at = [], None
    for m in event.measurements:
        metric, value, limit = m.get("metric", ""), m.get("value"), m.get("threshold")
        at = at or m.get("at")
        excused = (m.get("verdict") == "pass" and value is not None and limit is not None
                   and metric != "requests" and value > limit)
        rows.append({"metric": metric, "value": _shown(metric, value),
                     "threshold": _shown(metric, limit), "verdict": m.get("verdict", ""),
                     "detail": m.get("detail", ""), "excused": excused})
    measured = parse_datetime(at) if at else None
    return {"rows": rows, "at": measured or event.created_at,
            "excused": any(r["excused"] for r in rows)}


def charts_of(deployment, events: list, active: bool) -> dict:
    points = [{"at": e.created_at.isoformat(), "weights": e.weights} for e in events
              if e.weights]
    if deployment.stable_id:  # before the first step, the stable had all the traffic
        points.insert(0, {"at": deployment.created_at.isoformat(), "weights": {"stable": 1.0}})
    if points and active:  # the current split holds until now
        points.append({"at": timezone.now().isoformat(), "weights": points[-1]["weights"]})
    return {
        "traffic_chart": charts.rollout_traffic(points),
        "measurements_chart": charts.rollout_measurements(
            [{"at": e.created_at.isoformat(), "measurements": e.measurements}
             for e in events if e.measurements], shares=SHARES),
    }


def context(deployment, events: list, active: bool) -> dict:
    return {"status_text": status_text(deployment), "serving_now": serving_now(events),
            "analysis": latest_analysis(events), **charts_of(deployment, events, active)}
