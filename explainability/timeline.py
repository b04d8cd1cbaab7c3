"""Time axes people can read, and rollout markers on them.

Plotly picks tick spacing from the data's span: one point (or a few seconds of points) gets
ticks like "22:24:52.8185". ``time_axis`` gives every time chart a span of at least ten
minutes and ticks to the minute. ``markers`` draws moments (a rollout started, changed its
weights, finished) as labelled vertical lines, as Grafana draws annotations.
"""

from __future__ import annotations

import datetime as dt

from explainability.plotly_text import safe

MIN_SPAN = dt.timedelta(minutes=10)
MARKER_COLOR = "#7c3aed"


def plotly_time(value) -> str:
    """An ISO time (any zone), a datetime or POSIX seconds as Plotly reads a UTC time:
    "YYYY-MM-DD HH:MM:SS" (Plotly.js ignores zone suffixes)."""
    return _parse(value).strftime("%Y-%m-%d %H:%M:%S")


def _parse(value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def time_axis(times: list, title: str = "time (UTC)") -> dict:
    """An x axis over ``times`` at least ten minutes wide, ticked to the minute (with the day
    when the span passes a day); the exact second on hover."""
    moments = [_parse(t) for t in times if t is not None]
    if not moments:
        return {"type": "date", "title": {"text": title}}
    low, high = min(moments), max(moments)
    span = high - low
    pad = (MIN_SPAN - span) / 2 if span < MIN_SPAN else span / 40
    low, high = low - pad, high + pad
    long = high - low > dt.timedelta(days=1)
    return {"type": "date", "title": {"text": title}, "gridcolor": "#e5e7eb",
            "range": [low.strftime("%Y-%m-%d %H:%M:%S"), high.strftime("%Y-%m-%d %H:%M:%S")],
            "tickformat": "%b %d %H:%M" if long else "%H:%M",
            "hoverformat": "%Y-%m-%d %H:%M:%S", "nticks": 8}


def markers(moments: list[dict], axis: str = "x") -> tuple[list[dict], list[dict]]:
    """(shapes, annotations): a dashed vertical line and a label inside its top for each
    ``{"at": time, "label": "canary 25%"}`` (label and detail are people's text: escaped)."""
    shapes, annotations = [], []
    for moment in moments:
        at = plotly_time(moment["at"])
        shapes.append({"type": "line", "xref": axis, "x0": at, "x1": at, "yref": "paper",
                       "y0": 0, "y1": 1, "line": {"color": MARKER_COLOR, "width": 1,
                                                  "dash": "dash"}})
        annotations.append({"x": at, "xref": axis, "y": 1, "yref": "paper", "yanchor": "top",
                            "text": safe(moment["label"]), "showarrow": False, "textangle": 0,
                            "font": {"size": 10, "color": MARKER_COLOR},
                            "hovertext": safe(moment.get("detail") or moment["label"]),
                            "bgcolor": "rgba(255,255,255,0.8)"})
    return shapes, annotations


def within(moments: list[dict], times: list) -> list[dict]:
    """The markers inside the span of ``times`` (after ``time_axis``'s padding); markers
    closer than a fiftieth of the span (a rollout started, promoted and succeeded within
    seconds) are one, labelled by the last, so labels never print over each other."""
    axis = time_axis(times)
    if "range" not in axis:
        return []
    low, high = (dt.datetime.fromisoformat(t) for t in axis["range"])
    close = (high - low) / 50
    shown: list[dict] = []
    for moment in sorted((m for m in moments if low <= _parse(m["at"]) <= high),
                         key=lambda m: _parse(m["at"])):
        if shown and _parse(moment["at"]) - _parse(shown[-1]["at"]) <= close:
            earlier = shown.pop()
            moment = {**moment, "detail": "; ".join(
                d for d in (earlier.get("detail") or earlier["label"],
                            moment.get("detail") or moment["label"]) if d)}
        shown.append(moment)
    return shown
