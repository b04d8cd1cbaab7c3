"""Plotly figures of SHAP explanations, in the words of ``explainability.words``. No Django.

``output`` is what the values add up to: an ``Output`` (with the model's class labels) or
the explainer's machine text (``"log-odds of class 1"``). The importance bars and the
beeswarm show the same features (``TOP``); the bars' colours are named in their legend;
the waterfall ends at the predicted probability and label. Feature names and class labels
are people's text: escaped (``plotly_text.safe``) wherever Plotly draws them.
"""

from __future__ import annotations

import math

from explainability.charts import BASE_LAYOUT, _figure, _title
from explainability.plotly_text import safe
from explainability.words import LOG_ODDS, PROBABILITY, SCORE, Output, num, percent, quoted

TOP = 12  # features in the importance bars and the beeswarm alike
RAISES, LOWERS, MIXED = "#dc2626", "#2563eb", "#64748b"


def _output(output) -> Output:
    return output if isinstance(output, Output) else Output.parse(output or "")


def _what(out: Output) -> str:
    if out.scale == SCORE:
        return f"the model's score for {quoted(out.label)}"
    return f"the probability of {quoted(out.label)}" if out.classifier else "the prediction"


def shap_importance(importance: list[dict], output, top: int = TOP) -> dict | None:
    """Mean |SHAP| per feature (most important on top), coloured by direction (named in
    the legend), with the spread across rows as whiskers that stop at zero."""
    rows = importance[:top][::-1]
    if not rows:
        return None
    out = _output(output)
    what = safe(_what(out))
    groups = [(RAISES, f"higher values raise {what}", lambda d: d > 0.3),
              (LOWERS, f"higher values lower {what}", lambda d: d < -0.3),
              (MIXED, "mixed: it depends on the row", lambda d: -0.3 <= d <= 0.3)]
    data = []
    for color, name, test in groups:
        chosen = [r for r in rows if test(r["direction"])]
        if not chosen:
            continue
        data.append({
            "type": "bar", "orientation": "h", "name": name, "marker": {"color": color},
            "x": [r["mean_abs"] for r in chosen], "y": [safe(r["feature"]) for r in chosen],
            # |SHAP| is never negative: the whisker below stops at zero.
            "error_x": {"type": "data", "symmetric": False, "color": "#94a3b8",
                        "array": [r["std_abs"] for r in chosen],
                        "arrayminus": [min(r["std_abs"], r["mean_abs"]) for r in chosen]},
            "hovertemplate": "%{y}: average effect %{x:.3g}<extra>" + name + "</extra>"})
    return _figure(data, {
        "height": max(260, 26 * len(rows) + 140),
        "title": _title("What moves the model: average size of each input's effect", 13),
        "xaxis": {"title": _title(safe(f"average size of the {out.effect_unit}")),
                  "gridcolor": "#e5e7eb", "rangemode": "tozero"},
        "yaxis": {"categoryorder": "array",
                  "categoryarray": [safe(r["feature"]) for r in rows]},
        "barmode": "overlay", "showlegend": True,
        "legend": {"orientation": "h", "y": -0.3, "x": 0, "yanchor": "top"},
        "margin": {"l": 160, "r": 16, "t": 36, "b": 110}})


def _short(values) -> list:
    """Four significant digits: enough to read, and a fraction of the page's bytes."""
    return [float(f"{v:.4g}") for v in values]


def shap_beeswarm(feature_names: list[str], values: list[list[float]],
                  rows: list[list[float]], importance: list[dict], top: int = TOP,
                  output=None) -> dict | None:
    """One dot per row and feature: its effect (x), coloured by the feature's value (blue
    low, red high); the same features as the importance bars, most important on top.

    A plain figure dict: validating thousands of points through plotly's classes costs more
    than the rest of the page.
    """
    import numpy as np

    if not values or not importance:
        return None
    out = _output(output)
    values, rows = np.asarray(values, float), np.asarray(rows, float)
    order = [feature_names.index(i["feature"]) for i in importance[:top]][::-1]
    rng = np.random.default_rng(0)
    xs, ys, colors, texts = [], [], [], []
    for position, j in enumerate(order):
        column = rows[:, j]
        low, high = np.percentile(column, 5), np.percentile(column, 95)
        scaled = np.clip((column - low) / (high - low), 0, 1) if high > low else \
            np.full(len(column), 0.5)
        xs.extend(_short(values[:, j]))
        ys.extend(np.round(position + rng.uniform(-0.3, 0.3, len(column)), 3).tolist())
        colors.extend(np.round(scaled, 3).tolist())
        texts.extend(_short(column))
    return {
        "data": [{
            "type": "scattergl", "mode": "markers", "x": xs, "y": ys, "customdata": texts,
            "marker": {"size": 5, "color": colors, "opacity": 0.7,
                       "colorscale": [[0, LOWERS], [1, RAISES]],
                       "colorbar": {"title": {"text": "input value", "side": "right"},
                                    "tickvals": [0, 1], "ticktext": ["low", "high"],
                                    "thickness": 10}},
            "hovertemplate": "value %{customdata}<br>effect %{x:.3g}<extra></extra>"}],
        "layout": {**BASE_LAYOUT, "height": max(260, 28 * len(order) + 110),
                   "title": {"text": "Each row's effects (dot colour: the input's value, blue "
                                     "low, red high)", "font": {"size": 13}},
                   "xaxis": {"title": {"text": safe(f"{out.effect_unit} (right: towards "
                                                    f"{_towards(out)})")},
                             "zeroline": True, "zerolinecolor": "#94a3b8",
                             "gridcolor": "#e5e7eb"},
                   "yaxis": {"tickvals": list(range(len(order))),
                             "ticktext": [safe(feature_names[j]) for j in order]},
                   "showlegend": False, "margin": {"l": 160, "r": 16, "t": 36, "b": 48}},
    }


def _towards(out: Output) -> str:
    return quoted(out.label) if out.classifier else "a higher prediction"


def shap_dependence(feature: str, feature_names: list[str], values: list[list[float]],
                    rows: list[list[float]], output=None) -> dict | None:
    """How one feature's value maps to its effect (a plain figure dict, as the beeswarm)."""
    if feature not in feature_names or not values:
        return None
    out = _output(output)
    j = feature_names.index(feature)
    return {
        "data": [{"type": "scattergl", "mode": "markers", "x": _short(r[j] for r in rows),
                  "y": _short(v[j] for v in values),
                  "marker": {"size": 6, "color": LOWERS, "opacity": 0.6},
                  "hovertemplate": safe(feature)
                                   + " = %{x:.3g}<br>effect %{y:.3g}<extra></extra>"}],
        "layout": {**BASE_LAYOUT, "height": 280,
                   "title": {"text": f"Effect of {safe(feature)} by its value",
                             "font": {"size": 13}},
                   "xaxis": {"title": {"text": safe(feature)}, "gridcolor": "#e5e7eb"},
                   "yaxis": {"title": {"text": safe(out.effect_unit.replace("effect on the ",
                                                                            "effect on "))},
                             "zeroline": True, "zerolinecolor": "#94a3b8",
                             "gridcolor": "#e5e7eb"}},
    }


PROBABILITY_TICKS = (0.0001, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999)


def _probability_axis(out: Output, totals: list[float]) -> dict:
    """An x axis read as the probability of the class: on the score scale, ticks placed at
    the scores of round probabilities; on the probability scale, percentages."""
    if out.scale == PROBABILITY:
        return {"title": _title(safe(f"probability of {quoted(out.label)}")),
                "tickformat": ".0%", "gridcolor": "#e5e7eb"}
    if out.scale == SCORE:
        return {"title": _title(safe(f"the model's score for {quoted(out.label)}")),
                "gridcolor": "#e5e7eb"}
    if out.scale != LOG_ODDS:
        return {"title": _title("predicted value"), "gridcolor": "#e5e7eb"}
    low, high = min(*totals, 0.0) - 0.5, max(*totals, 0.0) + 0.5  # bars start at 0 (50%)
    ticks = [p for p in PROBABILITY_TICKS if low <= math.log(p / (1 - p)) <= high]
    return {"title": _title(safe(f"probability of {quoted(out.label)}")),
            "tickvals": [math.log(p / (1 - p)) for p in ticks],
            "ticktext": [f"{100 * p:g}%" for p in ticks], "gridcolor": "#e5e7eb"}


def shap_waterfall(base_value: float, values: list[float], row: list[float],
                   feature_names: list[str], output, top: int = 10,
                   labels: dict | None = None, classes: list | None = None,
                   predicted=None) -> dict | None:
    """One prediction: from the average, each input's push up or down, to the predicted
    probability and label (the predicted value for a regressor); ``predicted``, the model's
    label for the row, names the class a multiclass model predicts (``Output.verdict``)."""
    if not values:
        return None
    out = _output(output)
    order = sorted(range(len(values)), key=lambda j: -abs(values[j]))
    shown, rest = order[:top], order[top:]
    labels_y = [safe(f"{feature_names[j]} = {num(row[j])}") for j in shown]
    steps = [values[j] for j in shown]
    if rest:
        labels_y.append(f"{len(rest)} other inputs")
        steps.append(sum(values[j] for j in rest))
    total = base_value + sum(values)
    totals = [base_value]
    for step in steps:
        totals.append(totals[-1] + step)
    verdict = out.verdict(total, labels, classes, predicted=predicted)
    start = (f"average score ({percent(out.probability(base_value))})"
             if out.scale == LOG_ODDS else
             f"average ({percent(base_value)})" if out.scale == PROBABILITY else
             f"average score ({num(base_value)})" if out.scale == SCORE else
             f"average ({num(base_value)})")
    waterfall = {
        "type": "waterfall", "orientation": "h",
        "measure": ["absolute", *["relative"] * len(steps), "total"],
        "y": [start, *labels_y, "this prediction"], "x": [base_value, *steps, total],
        "increasing": {"marker": {"color": RAISES}},
        "decreasing": {"marker": {"color": LOWERS}},
        "totals": {"marker": {"color": "#0f172a"}}, "connector": {"line": {"color": "#cbd5e1"}},
        "hovertemplate": "%{y}: %{x:+.3g}<extra></extra>"}
    return _figure([waterfall], {
        "height": max(280, 26 * (len(steps) + 2) + 100),
        "title": _title(safe(f"This row: {verdict}"), 13),
        "yaxis": {"autorange": "reversed"}, "xaxis": _probability_axis(out, totals),
        "showlegend": False, "margin": {"l": 220, "r": 16, "t": 36, "b": 48}})
