"""Plotly figure builders for the registry pages. Plain values in, figure dicts out.

Each builder returns a JSON-ready dict ``{"data": [...], "layout": {...}}`` that the page
hands to Plotly.js (served from the installed plotly package, never a CDN). People's text
in it (metric, feature, class, variant and dataset names, reasons) goes through
``plotly_text.safe``: Plotly reads HTML in its text, and a name is no markup.

The dicts are written directly, not through ``plotly.graph_objects``: building and
validating a figure through plotly's classes cost 10–35 ms per chart, more than the rest
of a page (``benchmarks/portal_load.py``). The tests pass every builder's output through
``plotly.graph_objects.Figure``, which rejects any property Plotly does not know.
"""

from __future__ import annotations

import json
from collections import defaultdict

from explainability.plotly_text import safe
from explainability.timeline import markers, plotly_time, time_axis, within

PALETTE = ["#2563eb", "#16a34a", "#db2777", "#ea580c", "#7c3aed", "#0891b2", "#ca8a04",
           "#475569"]
BASE_LAYOUT = {
    "margin": {"l": 48, "r": 16, "t": 36, "b": 40},
    "font": {"family": "Inter, system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "hovermode": "closest",
}


_TEMPLATE: dict | None = None


def _template() -> dict:
    """plotly.py's default look (the "plotly" template), read once per process."""
    global _TEMPLATE
    if _TEMPLATE is None:
        import plotly.io as pio

        _TEMPLATE = json.loads(json.dumps(pio.templates["plotly"].to_plotly_json()))
    return _TEMPLATE


def _figure(data: list[dict], layout: dict) -> dict:
    return {"data": data, "layout": {"template": _template(), **BASE_LAYOUT, **layout}}


def _title(text: str, size: int | None = None) -> dict:
    return {"text": text, "font": {"size": size}} if size else {"text": text}


def _grid(titles: list[str], rows: int, columns: int, horizontal: float,
          vertical: float) -> tuple[dict, list[dict], list[tuple[str, str]]]:
    """What ``plotly.subplots.make_subplots`` lays out: an x and a y axis per cell (row-major,
    the first row on top), a title above each used cell. Returns the layout's axes, the
    title annotations and each title's (xaxis, yaxis) trace references."""
    width = (1 - horizontal * (columns - 1)) / columns
    height = (1 - vertical * (rows - 1)) / rows
    axes, annotations, refs = {}, [], []
    for index, text in enumerate(titles):
        row, column = divmod(index, columns)
        x0 = column * (width + horizontal)
        y1 = 1 - row * (height + vertical)
        suffix = "" if index == 0 else str(index + 1)
        axes[f"xaxis{suffix}"] = {"anchor": f"y{suffix}",
                                  "domain": [max(0.0, x0), min(1.0, x0 + width)]}
        axes[f"yaxis{suffix}"] = {"anchor": f"x{suffix}",
                                  "domain": [max(0.0, y1 - height), min(1.0, y1)]}
        annotations.append({"text": text, "x": x0 + width / 2, "y": y1, "xref": "paper",
                            "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 16}})
        refs.append((f"x{suffix}", f"y{suffix}"))
    return axes, annotations, refs


def _hline(y: float, line: dict, axes: tuple[str, str] = ("x", "y")) -> dict:
    return {"type": "line", "xref": f"{axes[0]} domain", "x0": 0, "x1": 1,
            "yref": axes[1], "y0": y, "y1": y, "line": line}


LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "rmse", "brier", "deviance",
                   "latency", "fpr", "fnr", "false_", "miss", "cost", "time", "seconds")
HIGHER_IS_BETTER = ("auc", "accuracy", "precision", "recall", "f1", "r2", "score", "ap",
                    "average_precision", "balanced", "specificity", "sensitivity", "tpr",
                    "tnr", "kappa", "mcc", "gain", "lift", "explained_variance")


def better(metric: str) -> str | None:
    """"higher" or "lower": which way a metric improves, read from its name (rmse, log_loss:
    lower; auc, r2, f1: higher); None when the name does not say."""
    name = metric.lower()
    if any(word in name for word in LOWER_IS_BETTER):
        return "lower"
    words = set(name.replace("-", "_").split("_"))
    if any(word in name for word in HIGHER_IS_BETTER if len(word) > 2) or words & {"ap", "f1", "r2"}:
        return "higher"
    return None


def _direction(metric: str) -> str:
    way = better(metric)
    return f"{metric} ({'↑' if way == 'higher' else '↓'} {way} is better)" if way else metric


def metric_history(versions: list[dict]) -> dict | None:
    """One line per metric across version numbers.

    ``versions``: ``[{"number": 1, "metrics": {"auc": 0.9}, "label": "v1"}]`` in any order.
    Metrics with different scales get their own small panel; every panel spans the same
    versions, a version without the metric is a gap (no line drawn across it), and each
    title says which way is better when the metric's name tells.
    """
    ordered = sorted(versions, key=lambda v: v["number"])
    numbers = [v["number"] for v in ordered]
    series: dict[str, dict[int, tuple]] = defaultdict(dict)
    for v in ordered:
        for name, value in (v.get("metrics") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                series[name][v["number"]] = (value, v.get("label") or f"v{v['number']}")
    if not series:
        return None
    names = sorted(series)
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    axes, annotations, refs = _grid([safe(_direction(n)) for n in names], rows, columns, 0.08,
                                    0.18)
    for annotation in annotations:
        annotation["font"] = {"size": 13}
    span = [min(numbers) - 0.5, max(numbers) + 0.5]
    for key, axis in axes.items():
        if key.startswith("x"):
            axis.update({"title": _title("version"), "range": span},
                        **({"dtick": 1} if len(numbers) <= 20 else {}))
        axis["gridcolor"] = "#e5e7eb"
    data = []
    for index, name in enumerate(names):
        points = series[name]
        data.append({
            "type": "scatter", "x": numbers, "connectgaps": False,
            "y": [points[n][0] if n in points else None for n in numbers],
            "mode": "lines+markers", "name": safe(name),
            "text": [safe(points[n][1]) if n in points else f"v{n}: not measured"
                     for n in numbers],
            "hovertemplate": "%{text}<br>" + safe(name) + " = %{y:.3g}<extra></extra>",
            "line": {"color": PALETTE[index % len(PALETTE)], "width": 2}, "marker": {"size": 8},
            "xaxis": refs[index][0], "yaxis": refs[index][1]})
    return _figure(data, {**axes, "annotations": annotations, "showlegend": False,
                          "height": 260 * rows, "margin": {"l": 48, "r": 16, "t": 40, "b": 40}})


def lineage_graph(graph: dict) -> dict:
    """Draw a lineage graph (``{"nodes", "edges"}``) left to right: datasets, then versions
    by generation. Node ``url``s are carried in ``customdata`` so a click can open them."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    parents = defaultdict(list)
    for e in graph["edges"]:
        parents[e["target"]].append(e["source"])

    depth: dict[str, int] = {}

    def depth_of(node_id: str, seen=()) -> int:
        if node_id in depth:
            return depth[node_id]
        if nodes[node_id]["kind"] == "dataset":
            depth[node_id] = 0
            return 0
        ups = [p for p in parents[node_id] if p in nodes and p not in seen]
        value = 1 + max((depth_of(p, (*seen, node_id)) for p in ups), default=0)
        depth[node_id] = value
        return value

    columns: dict[int, list[str]] = defaultdict(list)
    for node_id in nodes:
        columns[depth_of(node_id)].append(node_id)
    position = {}
    for x, members in columns.items():
        members.sort(key=lambda i: (nodes[i].get("number") or 0, nodes[i]["label"]))
        for rank, node_id in enumerate(members):
            position[node_id] = (x, -(rank - (len(members) - 1) / 2))

    annotations = []
    for e in graph["edges"]:
        if e["source"] not in position or e["target"] not in position:
            continue
        (x0, y0), (x1, y1) = position[e["source"]], position[e["target"]]
        annotations.append({
            "x": x1, "y": y1, "ax": x0, "ay": y0, "xref": "x", "yref": "y", "axref": "x",
            "ayref": "y", "showarrow": True, "arrowhead": 3, "arrowsize": 1.2, "arrowwidth": 1.5,
            "arrowcolor": "#94a3b8" if e["kind"] == "trained_on" else "#64748b",
            "standoff": 16, "startstandoff": 16, "text": "",
        })

    traces = []
    styles = {
        "dataset": ("Datasets", "square", "#0891b2"),
        "version": ("Versions", "circle", "#2563eb"),
        "deployment": ("Deployments", "diamond", "#16a34a"),
    }
    for kind, (title, symbol, color) in styles.items():
        members = [n for n in graph["nodes"] if n["kind"] == kind]
        if not members:
            continue
        colors = [("#dc2626" if n.get("status") == "invalid" else
                   "#f59e0b" if n.get("focus") else color) for n in members]
        traces.append({
            "type": "scatter", "x": [position[n["id"]][0] for n in members],
            "y": [position[n["id"]][1] for n in members],
            "mode": "markers+text", "name": title, "text": [safe(n["label"]) for n in members],
            "textposition": "bottom center",
            "customdata": [n.get("url") or "" for n in members],
            "hovertext": [_hover(n) for n in members], "hoverinfo": "text",
            "marker": {"symbol": symbol,
                       "size": [26 if n.get("focus") else 20 for n in members],
                       "color": colors, "line": {"width": 2, "color": "white"}},
        })
    width = max(columns) + 1 if columns else 1
    height = max(len(m) for m in columns.values()) if columns else 1
    return _figure(traces, {
        "annotations": annotations, "showlegend": True,
        "legend": {"orientation": "h", "y": 1.12}, "height": max(200, 110 * height + 60),
        "xaxis": {"visible": False, "range": [-0.5, width - 0.5]},
        "yaxis": {"visible": False, "range": [-(height / 2) - 0.3, height / 2 + 0.1]}})


def _hover(node: dict) -> str:
    label = safe(node["label"])
    if node["kind"] == "dataset":
        return f"{label}<br>sha256 {safe(node.get('sha256', '')[:12])}…<br>{safe(node.get('rows') or '?')} rows"
    return f"{label}<br>status: {safe(node.get('status', ''))}<br>{safe(node.get('created_at', '')[:10])}"


def feature_profile(name: str, profile: dict) -> dict:
    """The baseline distribution of one feature: a histogram over its quantile bins, or the
    frequencies of its categories."""
    if profile.get("kind") == "numeric" and profile.get("edges"):
        edges, counts = profile["edges"], profile["counts"]
        total = sum(counts) or 1
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        # Quantile bins have unequal widths: plot density so wide bins don't look tall.
        density = [c / total / w if w else 0 for c, w in zip(counts, widths, strict=True)]
        bar = {
            "type": "bar", "x": centers, "y": density, "width": widths,
            "marker": {"color": "#2563eb", "opacity": 0.75},
            "customdata": [[a, b, c] for a, b, c in zip(edges[:-1], edges[1:], counts,
                                                        strict=True)],
            "hovertemplate": "[%{customdata[0]:.4g}, %{customdata[1]:.4g}): "
                             "%{customdata[2]} rows<extra></extra>"}
        yaxis = {"title": _title("density"), "showticklabels": False}
    else:
        frequencies = profile.get("frequencies", {})
        items = sorted(frequencies.items(), key=lambda kv: -kv[1])[:20]
        bar = {"type": "bar", "x": [safe(k) for k, _ in items], "y": [v for _, v in items],
               "marker": {"color": "#0891b2"}}
        yaxis = {"title": _title("rows")}
    return _figure([bar], {"height": 200, "title": _title(safe(name), 13), "showlegend": False,
                           "bargap": 0.02, "yaxis": yaxis,
                           "margin": {"l": 36, "r": 8, "t": 32, "b": 28}})


def target_histogram(name: str, profile: dict, bins: int = 20) -> dict | None:
    """The target column as people picture it: rows per equal-width bin across its real
    range (min to max). The profile keeps quantile bins (for drift); each one's rows are
    spread evenly over it and summed into equal bins. A column with few distinct values
    (one profile bin per value: classes, counts) gets one bar per value, named by it."""
    edges, counts = profile.get("edges") or [], profile.get("counts") or []
    low, high = profile.get("min"), profile.get("max")
    if profile.get("kind") != "numeric" or not counts or low is None or high is None:
        return None
    name = safe(name)
    axis = {"title": _title(name), "gridcolor": "#e5e7eb"}
    # Quantile edges run from min to max; a discrete column's bins are centred on its
    # values, so its outer edges lie beyond them.
    if edges[0] < low or high == low:
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        centers[0], centers[-1] = low, high
        bar = {"type": "bar", "x": [f"{c:.4g}" for c in centers], "y": list(counts)}
        axis["type"] = "category"
    else:
        step = (high - low) / bins
        y = [0.0] * bins
        inner = [low, *edges[1:-1], high]
        for a, b, count in zip(inner[:-1], inner[1:], counts, strict=True):
            for i in range(bins):
                overlap = min(b, low + (i + 1) * step) - max(a, low + i * step)
                if overlap > 0 and b > a:
                    y[i] += count * overlap / (b - a)
        bar = {"type": "bar", "x": [low + (i + 0.5) * step for i in range(bins)],
               "y": [round(v, 1) for v in y], "width": step}
        pad = (high - low) / 20
        axis["range"] = [low - pad, high + pad]
    where = "%{x}" if axis.get("type") == "category" else "≈ %{x:.3g}"
    bar.update({"marker": {"color": "#16a34a", "opacity": 0.8},
                "hovertemplate": f"{name} {where}: %{{y:.0f}} rows<extra></extra>"})
    return _figure([bar], {"height": 240, "showlegend": False, "bargap": 0.05, "xaxis": axis,
                           "yaxis": {"title": _title("rows"), "gridcolor": "#e5e7eb"},
                           "margin": {"l": 48, "r": 16, "t": 36, "b": 40}})


def rollout_traffic(points: list[dict]) -> dict | None:
    """Traffic share of each variant over time, as a step chart.

    ``points``: ``[{"at": iso time, "weights": {"stable": 0.9, "candidate": 0.1}}]`` for every
    plan applied, oldest first.
    """
    points = [p for p in points if p.get("weights")]
    if len(points) < 2:
        return None  # one plan is a sentence, not a chart
    names = sorted({n for p in points for n in p["weights"]}, key=lambda n: n != "stable")
    colors = {"stable": "#64748b", "candidate": "#2563eb"}
    times = [plotly_time(p["at"]) for p in points]
    data = [{
        "type": "scatter", "x": times,
        "y": [100 * p["weights"].get(name, 0.0) for p in points], "mode": "lines+markers",
        "name": safe(name), "hovertemplate": safe(name) + " %{y:.0f}%<extra></extra>",
        "line": {"shape": "hv", "width": 3,
                 "color": colors.get(name, PALETTE[index % len(PALETTE)])}}
        for index, name in enumerate(names)]
    return _figure(data, {"height": 260, "legend": {"orientation": "h", "y": 1.15},
                          "xaxis": time_axis(times),
                          "yaxis": {"title": _title("traffic %"), "range": [0, 105],
                                    "gridcolor": "#e5e7eb"}})


def rollout_measurements(points: list[dict], shares=frozenset()) -> dict | None:
    """The candidate's analysed metrics over a rollout, each against its threshold.

    ``points``: ``[{"at": iso time, "measurements": [{"metric", "value", "threshold",
    "verdict", "detail"}]}]``. One small panel per metric; failed checks are drawn red,
    passes above their threshold (excused: the latency floor) amber, inconclusive grey.
    Metrics named in ``shares`` (error rates) are drawn in percent, as the table shows them.
    """
    series: dict[str, list] = defaultdict(list)
    for point in points:
        for m in point.get("measurements", []):
            if m.get("value") is not None and not str(m["metric"]).startswith("alert:"):
                series[m["metric"]].append((plotly_time(m.get("at") or point["at"]),
                                            m["value"], m.get("threshold"), m.get("verdict"),
                                            m.get("detail") or ""))
    if not series:
        return None
    names = sorted(series)
    axes, annotations, refs = _grid([safe(n) for n in names], 1, len(names), 0.08, 0.0)
    shared = time_axis([r[0] for rows in series.values() for r in rows], title="")
    for key in axes:
        if key.startswith("x"):
            axes[key].update(shared)
    data, shapes = [], []
    for index, name in enumerate(names):
        rows = series[name]
        scale, unit = (100, "%") if name in shares else (1, "")
        if unit:
            axes["yaxis" + refs[index][1][1:]]["ticksuffix"] = unit
        data.append({
            "type": "scatter", "x": [r[0] for r in rows], "y": [r[1] * scale for r in rows],
            "mode": "lines+markers", "name": safe(name), "text": [safe(r[4]) for r in rows],
            "marker": {"size": 8, "color": [_verdict_color(*r[1:4], floor=name != "requests")
                                            for r in rows]},
            "line": {"color": "#2563eb"},
            "hovertemplate": safe(name) + " %{y:.3g}" + unit + "<br>%{text}<extra></extra>",
            "xaxis": refs[index][0], "yaxis": refs[index][1]})
        limits = [r[2] for r in rows if r[2] is not None]
        if limits and name != "requests":
            shapes.append(_hline(limits[-1] * scale, {"dash": "dot", "color": "#dc2626"},
                                 refs[index]))
    return _figure(data, {**axes, "annotations": annotations, "shapes": shapes,
                          "height": 240, "showlegend": False})


def _verdict_color(value, threshold, verdict, floor: bool = True) -> str:
    """Red failed, grey inconclusive, amber passed above its (upper) limit, blue passed;
    ``floor`` False for a lower limit (requests: more is a pass)."""
    if verdict == "fail":
        return "#dc2626"
    if verdict == "inconclusive":
        return "#94a3b8"
    if floor and threshold is not None and value > threshold:
        return "#f59e0b"  # passed above its line: excused (the candidate is under the floor)
    return "#2563eb"


# -- monitoring ------------------------------------------------------------------------------

VARIANT_COLORS = {"stable": "#64748b", "candidate": "#2563eb"}


def _color(name: str, index: int) -> str:
    return VARIANT_COLORS.get(name, PALETTE[index % len(PALETTE)])


def time_series(title: str, series: dict[str, list[tuple]], y_title: str = "",
                percent: bool = False, threshold: float | None = None,
                height: int = 240, marks: list[dict] | None = None) -> dict | None:
    """Lines over time. ``series``: ``{name: [(iso time or epoch seconds, value), ...]}``;
    ``percent`` shows 0..1 values as %; ``threshold`` draws a dotted red line; ``marks``
    (``[{"at", "label"}]``, e.g. a rollout's steps) are drawn as labelled vertical lines."""
    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    data, every = [], []
    for index, (name, points) in enumerate(sorted(series.items())):
        times = [plotly_time(t) for t, _ in points]  # UTC, as Plotly.js reads it
        every.extend(times)
        values = [(100 * v if percent and v is not None else v) for _, v in points]
        data.append({
            # Markers while there are few points: one point alone draws no line.
            "type": "scatter", "x": times, "y": values, "name": safe(name),
            "mode": "lines" if len(points) > 30 else "lines+markers",
            "line": {"width": 2, "color": _color(name, index)},
            "hovertemplate": safe(name) + " %{y:.3g}" + ("%" if percent else "")
                             + "<extra></extra>"})
    shapes = [] if threshold is None else [
        _hline(100 * threshold if percent else threshold, {"dash": "dot", "color": "#dc2626"})]
    lines, labels = markers(within(marks or [], every))
    return _figure(data, {"height": height, "title": _title(safe(title), 13),
                          "shapes": shapes + lines, "annotations": labels,
                          "xaxis": time_axis(every, title=""),
                          "legend": {"orientation": "h", "y": -0.25},
                          "yaxis": {"title": _title(safe(y_title) + (" %" if percent else "")),
                                    "gridcolor": "#e5e7eb", "rangemode": "tozero"}})


def grouped_bars(title: str, categories: list[str], groups: dict[str, list[float]],
                 y_title: str = "share %", height: int = 240) -> dict | None:
    """Bars per category, one colour per group (e.g. predicted classes per variant)."""
    if not categories or not groups:
        return None
    data = [{"type": "bar", "x": [safe(c) for c in categories], "y": list(values),
             "name": safe(name), "marker": {"color": _color(name, index)},
             "hovertemplate": safe(name) + " %{x}: %{y:.3g}<extra></extra>"}
            for index, (name, values) in enumerate(sorted(groups.items()))]
    return _figure(data, {"height": height, "barmode": "group",
                          "title": _title(safe(title), 13),
                          "legend": {"orientation": "h", "y": -0.25},
                          "yaxis": {"title": _title(safe(y_title)), "gridcolor": "#e5e7eb"}})


def baseline_vs_live(feature: str, edges: list[float], baseline: list[float],
                     live: dict[str, list[float]]) -> dict | None:
    """Share of rows per baseline bin: the training data beside each live variant."""
    if not edges or len(baseline) != len(edges) - 1:
        return None
    labels = []
    for i in range(len(baseline)):
        low = "−∞" if i == 0 else f"{edges[i]:.3g}"
        high = "+∞" if i == len(baseline) - 1 else f"{edges[i + 1]:.3g}"
        labels.append(f"[{low}, {high})")

    def shares(counts):
        total = sum(counts)
        return [100 * c / total if total else 0.0 for c in counts]

    groups = {"baseline": shares(baseline)}
    groups.update({f"live: {name}": shares(counts) for name, counts in live.items()
                   if sum(counts) > 0})
    figure = grouped_bars(f"{feature}: baseline and live", labels, groups)
    if figure:  # the baseline in grey, whatever its position
        for trace in figure["data"]:
            if trace["name"] == "baseline":
                trace["marker"]["color"] = "#94a3b8"
    return figure


# -- explanations: explainability/shap_charts.py ------------------------------------------


def __getattr__(name: str):
    """``charts.shap_importance`` and the other explanation charts, kept in shap_charts."""
    if name.startswith("shap_"):
        from explainability import shap_charts

        return getattr(shap_charts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def ab_outcome_over_time(series: dict[str, list[dict]], names: dict[str, str], metric: str,
                         percent: bool, height: int = 300) -> dict | None:
    """Each variant's cumulative outcome over time with its 95% interval.

    ``series``: ``{variant: [{"time", "units", "value", "low", "high"}, ...]}`` (from the
    experiment's periodic aggregates); ``names``: the label of each variant ("A (v3)").
    Intervals are error bars while there are few points and shaded bands after that.
    """
    import datetime as dt

    series = {v: points for v, points in series.items() if points}
    if not series:
        return None
    scale = 100.0 if percent else 1.0
    data = []
    for index, (variant, points) in enumerate(sorted(series.items(), key=lambda kv: kv[0] !=
                                                     "stable")):
        color = _color(variant, index)
        label = safe(names.get(variant, variant))
        times = [p["time"][:19].replace("T", " ") for p in points]
        values = [p["value"] * scale if p["value"] is not None else None for p in points]
        low = [p["low"] * scale if p["low"] is not None else None for p in points]
        high = [p["high"] * scale if p["high"] is not None else None for p in points]
        units = [p["units"] for p in points]
        unit = "%" if percent else ""
        hover = (label + ": %{y:.3g}" + unit + " (95% CI %{customdata[1]:.3g}" + unit +
                 " to %{customdata[2]:.3g}" + unit + ") after %{customdata[0]:,} outcomes"
                 "<extra></extra>")
        custom = [[u, lo, hi] for u, lo, hi in zip(units, low, high, strict=True)]
        banded = len(points) > 12
        if banded:
            data.append({"type": "scatter", "x": times, "y": high, "mode": "lines",
                         "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False})
            data.append({"type": "scatter", "x": times, "y": low, "mode": "lines",
                         "line": {"width": 0}, "fill": "tonexty",
                         "fillcolor": _rgba(color, 0.18), "hoverinfo": "skip",
                         "name": f"{label} 95% interval"})
        error = None if banded else {
            "type": "data", "symmetric": False, "color": color, "thickness": 1.5,
            "array": [h - v if h is not None and v is not None else 0
                      for h, v in zip(high, values, strict=True)],
            "arrayminus": [v - lo if lo is not None and v is not None else 0
                           for lo, v in zip(low, values, strict=True)]}
        trace = {"type": "scatter", "x": times, "y": values, "name": label,
                 "customdata": custom, "mode": "lines" if banded else "lines+markers",
                 "line": {"width": 2.5, "color": color}, "hovertemplate": hover}
        if error:
            trace["error_y"] = error
        data.append(trace)
    # A little room either side, so a single point does not stretch the axis to microseconds.
    stamps = [dt.datetime.fromisoformat(p["time"][:19]) for pts in series.values() for p in pts]
    pad = max((max(stamps) - min(stamps)) / 20, dt.timedelta(minutes=10))
    return _figure(data, {
        "height": height,
        "title": _title(f"{safe(metric)} per variant so far, with 95% intervals", 13),
        "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {"title": _title("time (UTC)"),
                  "range": [str(min(stamps) - pad), str(max(stamps) + pad)]},
        "yaxis": {"title": _title(safe(metric) + (" %" if percent else "")),
                  "gridcolor": "#e5e7eb"}})
