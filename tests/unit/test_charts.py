"""explainability.charts: Plotly figure dicts for the registry pages."""

from __future__ import annotations

import json

import pytest

from explainability import charts

# metric_history -------------------------------------------------------------------------


def trace_named(figure: dict, name: str) -> dict:
    return next(t for t in figure["data"] if t["name"] == name)


def test_metric_history_is_none_without_metrics():
    assert charts.metric_history([]) is None
    assert charts.metric_history([{"number": 1, "metrics": {}},
                                  {"number": 2, "metrics": None},
                                  {"number": 3}]) is None


def test_metric_history_ignores_non_numeric_values():
    assert charts.metric_history([{"number": 1, "metrics": {"note": "n/a", "cm": [[1, 2]]}}]) \
        is None
    figure = charts.metric_history([{"number": 1, "metrics": {"auc": 0.9, "note": "n/a"}}])
    assert [t["name"] for t in figure["data"]] == ["auc"]


def test_metric_history_has_one_subplot_per_metric():
    figure = charts.metric_history([
        {"number": 1, "metrics": {"auc": 0.8, "accuracy": 0.7, "loss": 0.5, "f1": 0.6}},
        {"number": 2, "metrics": {"auc": 0.85, "loss": 0.4}},
    ])
    names = [t["name"] for t in figure["data"]]
    assert names == ["accuracy", "auc", "f1", "loss"]
    axes = {(t["xaxis"], t["yaxis"]) for t in figure["data"]}
    assert len(axes) == 4  # each metric on its own axes
    titles = [a["text"] for a in figure["layout"]["annotations"]]
    assert titles == ["accuracy (↑ higher is better)", "auc (↑ higher is better)",
                      "f1 (↑ higher is better)", "loss (↓ lower is better)"]
    # Four panels wrap onto a second row of at most three.
    assert figure["layout"]["height"] == 2 * 260


def test_metric_history_x_is_sorted_by_version_with_labels():
    figure = charts.metric_history([
        {"number": 3, "metrics": {"auc": 0.93}, "label": "retrained"},
        {"number": 1, "metrics": {"auc": 0.80}},
        {"number": 2, "metrics": {"auc": 0.91}, "label": "v2-tuned"},
    ])
    auc = trace_named(figure, "auc")
    assert auc["x"] == [1, 2, 3]
    assert auc["y"] == [0.80, 0.91, 0.93]
    assert auc["text"] == ["v1", "v2-tuned", "retrained"]


def test_metric_history_leaves_a_gap_where_a_version_misses_a_metric():
    figure = charts.metric_history([
        {"number": 1, "metrics": {"auc": 0.8, "f1": 0.5}},
        {"number": 2, "metrics": {"auc": 0.9}},
        {"number": 3, "metrics": {"auc": 0.7, "f1": 0.6}},
    ])
    f1 = trace_named(figure, "f1")
    assert f1["x"] == [1, 2, 3] and f1["y"] == [0.5, None, 0.6]
    assert f1["connectgaps"] is False  # no line drawn across v2
    assert trace_named(figure, "auc")["y"] == [0.8, 0.9, 0.7]


def test_metric_history_panels_share_the_version_range():
    figure = charts.metric_history([
        {"number": 1, "metrics": {"auc": 0.8}},
        {"number": 5, "metrics": {"rmse": 3.0}},
    ])
    layout = figure["layout"]
    assert layout["xaxis"]["range"] == layout["xaxis2"]["range"] == [0.5, 5.5]


def test_which_way_a_metric_is_better_is_read_from_its_name():
    assert [charts.better(n) for n in ("roc_auc", "r2", "f1", "rmse", "log_loss",
                                      "mean_absolute_error", "brier_score", "widgets")] == \
        ["higher", "higher", "higher", "lower", "lower", "lower", "lower", None]


def test_metric_history_is_json_serialisable():
    figure = charts.metric_history([{"number": 1, "metrics": {"auc": 0.8}}])
    assert json.loads(json.dumps(figure)) == figure


# lineage_graph --------------------------------------------------------------------------

@pytest.fixture
def graph() -> dict:
    def version(pk, number, status="ready", focus=False, url=True):
        return {"id": f"version:{pk}", "kind": "version", "label": f"clf v{number}",
                "number": number, "status": status, "focus": focus,
                "created_at": "2025-03-01T10:00:00+00:00",
                "url": f"/versions/{pk}/" if url else None}

    return {
        "nodes": [
            version(11, 1),
            version(12, 2, focus=True),
            version(13, 3, status="invalid"),
            version(14, 4, url=False),
            {"id": "dataset:5", "kind": "dataset", "label": "train.csv", "sha256": "ab" * 32,
             "rows": 500, "url": "/datasets/5/"},
        ],
        "edges": [
            {"source": "dataset:5", "target": "version:11", "kind": "trained_on"},
            {"source": "version:11", "target": "version:12", "kind": "derived_from"},
            {"source": "version:12", "target": "version:13", "kind": "derived_from"},
            {"source": "version:12", "target": "version:14", "kind": "derived_from"},
            {"source": "dataset:5", "target": "version:14", "kind": "trained_on"},
        ],
    }


def node_points(figure: dict) -> dict[str, dict]:
    """label -> {x, y, url, color, size, trace} for every node drawn."""
    points = {}
    for trace in figure["data"]:
        colors = trace["marker"]["color"]
        sizes = trace["marker"]["size"]
        for i, label in enumerate(trace["text"]):
            points[label] = {"x": trace["x"][i], "y": trace["y"][i],
                             "url": trace["customdata"][i], "color": colors[i],
                             "size": sizes[i], "trace": trace["name"]}
    return points


def test_lineage_places_datasets_left_of_versions(graph):
    points = node_points(charts.lineage_graph(graph))
    dataset_x = points["train.csv"]["x"]
    assert all(p["x"] > dataset_x for label, p in points.items() if label != "train.csv")


def test_lineage_places_parents_left_of_children(graph):
    figure = charts.lineage_graph(graph)
    points = node_points(figure)
    labels = {n["id"]: n["label"] for n in graph["nodes"]}
    for edge in graph["edges"]:
        assert points[labels[edge["source"]]]["x"] < points[labels[edge["target"]]]["x"], edge
    # Siblings share a column and do not overlap.
    assert points["clf v3"]["x"] == points["clf v4"]["x"]
    assert points["clf v3"]["y"] != points["clf v4"]["y"]


def test_lineage_draws_one_arrow_per_edge(graph):
    figure = charts.lineage_graph(graph)
    arrows = figure["layout"]["annotations"]
    assert len(arrows) == len(graph["edges"])
    points = node_points(figure)
    first = arrows[0]  # dataset:5 -> version:11
    assert (first["ax"], first["x"]) == (points["train.csv"]["x"], points["clf v1"]["x"])


def test_lineage_ignores_edges_to_nodes_outside_the_graph(graph):
    graph["edges"].append({"source": "version:99", "target": "version:11",
                           "kind": "derived_from"})
    figure = charts.lineage_graph(graph)
    assert len(figure["layout"]["annotations"]) == len(graph["edges"]) - 1


def test_lineage_carries_urls_in_customdata(graph):
    points = node_points(charts.lineage_graph(graph))
    assert points["clf v1"]["url"] == "/versions/11/"
    assert points["train.csv"]["url"] == "/datasets/5/"
    assert points["clf v4"]["url"] == ""  # no page to open, but still clickable safely


def test_lineage_marks_invalid_versions_red_and_the_focus_larger(graph):
    points = node_points(charts.lineage_graph(graph))
    assert points["clf v3"]["color"] == "#dc2626"
    assert points["clf v1"]["color"] != "#dc2626"
    assert points["clf v2"]["size"] > points["clf v1"]["size"]
    assert points["clf v2"]["color"] not in ("#dc2626", points["clf v1"]["color"])


def test_lineage_groups_nodes_into_one_trace_per_kind(graph):
    figure = charts.lineage_graph(graph)
    assert [t["name"] for t in figure["data"]] == ["Datasets", "Versions"]
    points = node_points(figure)
    assert points["train.csv"]["trace"] == "Datasets"


def test_lineage_of_a_version_without_parents_or_datasets():
    figure = charts.lineage_graph({"nodes": [
        {"id": "version:1", "kind": "version", "label": "v1", "number": 1, "status": "ready",
         "created_at": "2025-01-01T00:00:00", "url": "/v/1/"}], "edges": []})
    assert node_points(figure)["v1"]["url"] == "/v/1/"


def test_lineage_survives_a_cycle(graph):
    graph["edges"].append({"source": "version:13", "target": "version:11",
                           "kind": "derived_from"})
    figure = charts.lineage_graph(graph)
    assert len(node_points(figure)) == len(graph["nodes"])


def test_lineage_of_an_empty_graph_is_an_empty_figure():
    figure = charts.lineage_graph({"nodes": [], "edges": []})
    assert figure["data"] == []


# feature_profile ------------------------------------------------------------------------

def test_numeric_feature_profile_draws_density_bars_as_wide_as_their_bins():
    figure = charts.feature_profile("age", {"kind": "numeric", "edges": [0, 1, 3, 7],
                                            "counts": [10, 10, 20]})
    (bar,) = figure["data"]
    assert bar["type"] == "bar"
    assert bar["x"] == [0.5, 2.0, 5.0]
    assert bar["width"] == [1, 2, 4]
    # Density: share of rows / bin width, so the bars' areas sum to 1.
    assert bar["y"] == pytest.approx([0.25, 0.125, 0.125])
    assert sum(y * w for y, w in zip(bar["y"], bar["width"], strict=True)) == pytest.approx(1)
    assert bar["customdata"][2] == [3, 7, 20]
    assert figure["layout"]["title"]["text"] == "age"


def test_numeric_feature_profile_with_no_rows_does_not_divide_by_zero():
    figure = charts.feature_profile("x", {"kind": "numeric", "edges": [0, 1], "counts": [0]})
    assert figure["data"][0]["y"] == [0]


def test_all_missing_numeric_feature_profile_is_an_empty_chart():
    figure = charts.feature_profile("x", {"kind": "numeric", "edges": [], "counts": []})
    (bar,) = figure["data"]
    assert bar.get("x", []) == []


def test_categorical_feature_profile_sorts_by_frequency():
    figure = charts.feature_profile("city", {"kind": "categorical", "frequencies": {
        "Lyon": 3, "Paris": 10, "__other__": 5}})
    (bar,) = figure["data"]
    assert bar["x"] == ["Paris", "__other__", "Lyon"]
    assert bar["y"] == [10, 5, 3]
    assert figure["layout"]["yaxis"]["title"]["text"] == "rows"


def test_categorical_feature_profile_shows_at_most_twenty_categories():
    frequencies = {f"c{i:02d}": i + 1 for i in range(30)}
    (bar,) = charts.feature_profile("code", {"kind": "categorical",
                                             "frequencies": frequencies})["data"]
    assert len(bar["x"]) == 20
    assert bar["x"][0] == "c29"
    assert min(bar["y"]) == 11


def test_rollout_measurements_draw_one_panel_per_metric_with_failures_in_red():
    from explainability.charts import rollout_measurements

    assert rollout_measurements([]) is None
    figure = rollout_measurements([
        {"at": "2026-01-01T00:00:00", "measurements": [
            {"metric": "error_rate", "value": 0.0, "threshold": 0.01, "verdict": "pass"},
            {"metric": "requests", "value": 50, "threshold": 10, "verdict": "pass"}]},
        {"at": "2026-01-01T00:00:30", "measurements": [
            {"metric": "error_rate", "value": 0.2, "threshold": 0.01, "verdict": "fail"},
            {"metric": "alert:Drift", "value": None, "threshold": None, "verdict": "fail"}]},
    ])
    traces = {t["name"]: t for t in figure["data"]}
    assert set(traces) == {"error_rate", "requests"}
    assert traces["error_rate"]["marker"]["color"] == ["#2563eb", "#dc2626"]
    assert any(shape.get("y0") == 0.01 for shape in figure["layout"]["shapes"])


def test_rollout_measurements_tell_an_excused_pass_from_a_plain_one():
    figure = charts.rollout_measurements([
        {"at": "2026-01-01T00:00:00+00:00", "measurements": [
            {"metric": "p99_latency_ratio", "value": 2.2, "threshold": 1.5, "verdict": "pass",
             "detail": "2.2 > 1.5, but the candidate's p99 is under the latency floor"},
            {"metric": "requests", "value": 1270, "threshold": 100, "verdict": "pass"},
            {"metric": "error_rate", "value": None, "threshold": 0.01,
             "verdict": "inconclusive"}]}])
    traces = {t["name"]: t for t in figure["data"]}
    assert traces["p99_latency_ratio"]["marker"]["color"] == ["#f59e0b"]  # amber: excused
    assert "latency floor" in traces["p99_latency_ratio"]["text"][0]
    assert traces["requests"]["marker"]["color"] == ["#2563eb"]  # more than needed: a pass
    assert traces["p99_latency_ratio"]["x"] == ["2026-01-01 00:00:00"]


def test_rollout_error_rates_are_drawn_in_percent_as_the_table_shows_them():
    figure = charts.rollout_measurements([
        {"at": "2026-01-01T00:00:00+00:00", "measurements": [
            {"metric": "error_rate", "value": 0.00112, "threshold": 0.01, "verdict": "pass"},
            {"metric": "p99_latency_ratio", "value": 1.2, "threshold": 1.5, "verdict": "pass"}]}],
        shares={"error_rate"})
    traces = {t["name"]: t for t in figure["data"]}
    assert traces["error_rate"]["y"] == [pytest.approx(0.112)]
    axis = "yaxis" + traces["error_rate"]["yaxis"][1:]
    assert figure["layout"][axis]["ticksuffix"] == "%"
    assert any(shape.get("y0") == 1.0 for shape in figure["layout"]["shapes"])
    assert traces["p99_latency_ratio"]["y"] == [1.2]


# time axes and markers -----------------------------------------------------------------

def test_a_single_point_gets_ten_minutes_of_axis_ticked_to_the_minute():
    from explainability.timeline import time_axis

    axis = time_axis(["2026-12-05T22:24:52.818512+00:00"])
    assert axis["range"] == ["2026-12-05 22:19:52", "2026-12-05 22:29:52"]
    assert axis["tickformat"] == "%H:%M"
    assert time_axis(["2026-12-01 00:00:00", "2026-12-05 00:00:00"])["tickformat"] == \
        "%b %d %H:%M"


def test_time_series_draws_rollout_markers_inside_its_range_only():
    figure = charts.time_series("traffic", {"stable": [(0, 1.0), (600, 2.0)],
                                            "none": [(0, 0.5)]},
                                marks=[{"at": 300, "label": "v2 25%"},
                                       {"at": 86_400, "label": "v3 started"}])
    layout = figure["layout"]
    labels = [a["text"] for a in layout["annotations"]]
    assert labels == ["v2 25%"]
    lines = [s for s in layout["shapes"] if s.get("yref") == "paper"]
    assert lines[0]["x0"] == lines[0]["x1"] == "1970-01-01 00:05:00"
    assert layout["xaxis"]["tickformat"] == "%H:%M"
    # A rollout that starts and succeeds within seconds is one marker, not labels on labels.
    quick = charts.time_series("traffic", {"stable": [(0, 1.0), (600, 2.0)]},
                               marks=[{"at": 300, "label": "v2 promoting"},
                                      {"at": 302, "label": "v2 succeeded"}])
    assert [a["text"] for a in quick["layout"]["annotations"]] == ["v2 succeeded"]


def test_a_target_is_drawn_in_equal_bins_across_its_real_range():
    profile = {"kind": "numeric", "edges": [25.0, 60.0, 100.0, 346.0], "counts": [40, 40, 40],
               "min": 25.0, "max": 346.0}
    (bar,) = charts.target_histogram("target", profile)["data"]
    assert len(bar["x"]) == 20 and 25 < bar["x"][0] < bar["x"][-1] < 346
    assert abs(sum(bar["y"]) - 120) < 0.5  # every row counted once
    low, high = charts.target_histogram("target", profile)["layout"]["xaxis"]["range"]
    assert 0 < low < 25 and 346 < high < 400
    flags = {"kind": "numeric", "edges": [-0.5, 0.5, 1.5], "counts": [7, 3], "min": 0.0,
             "max": 1.0}
    (bar,) = charts.target_histogram("flag", flags)["data"]
    assert bar["x"] == ["0", "1"] and bar["y"] == [7, 3]  # one bar per value
    assert charts.target_histogram("city", {"kind": "categorical"}) is None


# every builder's figure is one Plotly accepts --------------------------------------------

def _every_figure(graph) -> dict[str, dict]:
    rows = [[1.0, 5.0], [2.0, 3.0], [3.0, 1.0]]
    values = [[0.1, -0.2], [0.3, 0.0], [-0.1, 0.2]]
    importance = [{"feature": "a", "mean_abs": 0.2, "std_abs": 0.1, "direction": 0.5},
                  {"feature": "b", "mean_abs": 0.1, "std_abs": 0.05, "direction": -0.5}]
    ab_points = [{"time": f"2026-01-01T00:{m:02d}:00", "units": 10 * m + 5, "value": 0.5,
                  "low": 0.4, "high": 0.6} for m in range(0, 60, 3)]
    return {
        "metric_history": charts.metric_history([
            {"number": n, "metrics": {"auc": 0.9, "f1": 0.8, "loss": 0.3, "recall": 0.7}}
            for n in (1, 2)]),
        "lineage_graph": charts.lineage_graph(graph),
        "feature_profile numeric": charts.feature_profile(
            "age", {"kind": "numeric", "edges": [0, 1, 3], "counts": [4, 6]}),
        "feature_profile categorical": charts.feature_profile(
            "city", {"kind": "categorical", "frequencies": {"a": 3, "b": 1}}),
        "rollout_traffic": charts.rollout_traffic([
            {"at": "2026-01-01T00:00:00", "weights": {"stable": 1.0}},
            {"at": "2026-01-01T00:01:00", "weights": {"stable": 0.9, "candidate": 0.1}}]),
        "rollout_measurements": charts.rollout_measurements([
            {"at": "2026-01-01T00:00:00", "measurements": [
                {"metric": "error_rate", "value": 0.0, "threshold": 0.01, "verdict": "pass"},
                {"metric": "latency", "value": 20, "threshold": 50, "verdict": "pass"}]}]),
        "time_series": charts.time_series("errors", {"stable": [(0, 0.1), (60, 0.2)]},
                                          percent=True, threshold=0.05),
        "time_series marked": charts.time_series(
            "traffic", {"stable": [(0, 1.0), (600, 2.0)]},
            marks=[{"at": 300, "label": "v2 25%", "detail": "step 2 of 4"}]),
        "target_histogram": charts.target_histogram("y", {
            "kind": "numeric", "edges": [float(e) for e in range(0, 110, 10)],
            "counts": [5] * 10, "min": 0.0, "max": 100.0}),
        "target_histogram discrete": charts.target_histogram("y", {
            "kind": "numeric", "edges": [-0.5, 0.5, 1.5], "counts": [7, 3], "min": 0.0,
            "max": 1.0}),
        "grouped_bars": charts.grouped_bars("classes", ["0", "1"], {"stable": [40.0, 60.0]}),
        "baseline_vs_live": charts.baseline_vs_live("age", [0, 1, 2], [3, 4],
                                                    {"stable": [1, 2]}),
        "shap_importance": charts.shap_importance(importance, "probability"),
        "shap_beeswarm": charts.shap_beeswarm(["a", "b"], values, rows, importance),
        "shap_dependence": charts.shap_dependence("a", ["a", "b"], values, rows),
        "shap_waterfall": charts.shap_waterfall(0.5, [0.1, -0.2], [1.0, 5.0], ["a", "b"],
                                                "probability"),
        "ab_outcome_over_time banded": charts.ab_outcome_over_time(
            {"stable": ab_points, "candidate": ab_points}, {"stable": "A"}, "accuracy", True),
        "ab_outcome_over_time few": charts.ab_outcome_over_time(
            {"stable": ab_points[:3]}, {"stable": "A"}, "accuracy", False),
    }


def test_every_builder_makes_a_figure_plotly_accepts(graph):
    """The builders write figure dicts by hand (plotly's classes are too slow for a page),
    so plotly's own validation is applied here: an unknown or misspelt property, a wrong
    type or a trace on a missing axis raises."""
    import plotly.graph_objects as go

    for name, figure in _every_figure(graph).items():
        assert figure and figure["data"], name
        json.dumps(figure)
        validated = go.Figure(figure).to_plotly_json()
        for trace in figure["data"]:
            for ref in ("xaxis", "yaxis"):
                axis = trace.get(ref)
                if axis and axis not in ("x", "y"):
                    assert f"{ref}{axis[1:]}" in figure["layout"], (name, axis)
        assert len(validated["data"]) == len(figure["data"]), name


def test_subplots_are_laid_out_as_make_subplots_does():
    from plotly.subplots import make_subplots

    figure = charts.metric_history([{"number": 1, "metrics": {n: 1.0 for n in "abcd"}}])
    expected = make_subplots(rows=2, cols=3, subplot_titles=list("abcd"),
                             horizontal_spacing=0.08, vertical_spacing=0.18).to_plotly_json()
    for key in ("xaxis", "yaxis", "xaxis4", "yaxis4"):
        assert figure["layout"][key]["domain"] == pytest.approx(expected["layout"][key]["domain"])
    assert [a["x"] for a in figure["layout"]["annotations"]] == pytest.approx(
        [a["x"] for a in expected["layout"]["annotations"]])
    assert [a["y"] for a in figure["layout"]["annotations"]] == pytest.approx(
        [a["y"] for a in expected["layout"]["annotations"]])


# explanations (explainability/shap_charts.py) -----------------------------------------------


def _explained(features: int = 15, rows: int = 30):
    import numpy as np

    rng = np.random.default_rng(0)
    names = [f"x{j}" for j in range(features)]
    values = rng.normal(size=(rows, features)).tolist()
    data = rng.normal(size=(rows, features)).tolist()
    importance = [{"feature": n, "mean_abs": 1.0 / (j + 1), "std_abs": 2.0 / (j + 1),
                   "direction": (0.9, -0.9, 0.0)[j % 3]} for j, n in enumerate(names)]
    return names, values, data, importance


def test_shap_bars_name_their_colours_never_go_below_zero_and_match_the_beeswarm():
    from explainability.words import Output

    names, values, rows, importance = _explained()
    out = Output.parse("log-odds of class 1", {"0": "malignant", "1": "benign"})
    bars = charts.shap_importance(importance, out)
    beeswarm = charts.shap_beeswarm(names, values, rows, importance, output=out)
    shown = [f for trace in bars["data"] for f in trace["y"]]
    assert sorted(shown) == sorted(beeswarm["layout"]["yaxis"]["ticktext"])  # same features
    assert len(shown) == 12
    assert {t["name"] for t in bars["data"]} == {
        "higher values raise the probability of “benign”",
        "higher values lower the probability of “benign”", "mixed: it depends on the row"}
    assert bars["layout"]["showlegend"] is True
    for trace in bars["data"]:
        assert trace["error_x"]["symmetric"] is False
        assert all(x - minus >= 0 for x, minus in zip(trace["x"], trace["error_x"]["arrayminus"],
                                                       strict=True))
    text = json.dumps([bars["layout"], beeswarm["layout"]], ensure_ascii=False)
    assert "log-odds" not in text and "class 1" not in text and "benign" in text


def test_the_waterfall_ends_with_the_predicted_label_and_probability():
    from explainability.words import Output

    out = Output.parse("log-odds of class 1", {"0": "malignant", "1": "benign"})
    figure = charts.shap_waterfall(1.0, [-8.0, -3.5], [20.0, 0.123456], ["area", "texture"],
                                   out, labels={"0": "malignant", "1": "benign"},
                                   classes=[0, 1])
    title = figure["layout"]["title"]["text"]
    assert title == "This row: malignant (probability 100.0%)"  # logistic(−10.5)
    assert figure["data"][0]["y"][0] == "average score (73.1%)"
    assert "texture = 0.123" in figure["data"][0]["y"]
    axis = figure["layout"]["xaxis"]
    assert "50%" in axis["ticktext"] and "probability of “benign”" in axis["title"]["text"]
    forest = charts.shap_waterfall(0.6, [0.3], [1.0], ["a"], "probability of class 1")
    assert forest["layout"]["title"]["text"] == "This row: 1 (probability 90.0%)"
    assert forest["layout"]["xaxis"]["tickformat"] == ".0%"


# people's text is shown as typed, never read as markup ------------------------------------

HOSTILE = '<a href="https://evil.example/login">benign</a>'


def _every_figure_with(name: str) -> dict[str, dict]:
    """Every builder that takes people's text, given ``name`` for all of it: metric,
    feature, category, class, variant, model, version and dataset names, reasons."""
    from explainability.words import Output

    labels = {"0": "malignant", "1": name}
    out = Output.parse("log-odds of class 1", labels)
    rows, values = [[1.0, 5.0], [2.0, 3.0]], [[0.1, -0.2], [0.3, 0.0]]
    importance = [{"feature": name, "mean_abs": 0.2, "std_abs": 0.1, "direction": d}
                  for d in (0.5, -0.5, 0.0)]
    at = [{"time": f"2026-01-01T00:{m:02d}:00", "units": 5, "value": 0.5, "low": 0.4,
           "high": 0.6} for m in range(0, 60, 3)]
    three = {"0": "a", "1": "b", "2": name}
    return {
        "metric_history": charts.metric_history(
            [{"number": 1, "metrics": {name: 0.9}, "label": name}]),
        "lineage_graph": charts.lineage_graph({"nodes": [
            {"id": "d", "kind": "dataset", "label": name, "sha256": name, "rows": name},
            {"id": "v", "kind": "version", "label": name, "status": name,
             "created_at": name}], "edges": [{"source": "d", "target": "v",
                                               "kind": "trained_on"}]}),
        "feature_profile": charts.feature_profile(name, {"kind": "categorical",
                                                         "frequencies": {name: 3}}),
        "target_histogram": charts.target_histogram(name, {
            "kind": "numeric", "edges": [0.0, 5.0, 10.0], "counts": [1, 2], "min": 0.0,
            "max": 10.0}),
        "rollout_traffic": charts.rollout_traffic([
            {"at": "2026-01-01T00:00:00", "weights": {name: 1.0}},
            {"at": "2026-01-01T00:01:00", "weights": {name: 0.5, "candidate": 0.5}}]),
        "rollout_measurements": charts.rollout_measurements([
            {"at": "2026-01-01T00:00:00", "measurements": [
                {"metric": name, "value": 1.0, "threshold": 2.0, "verdict": "pass",
                 "detail": name}]}]),
        "time_series": charts.time_series(name, {name: [(0, 1.0), (600, 2.0)]}, name,
                                          marks=[{"at": 300, "label": name, "detail": name}]),
        "grouped_bars": charts.grouped_bars(name, [name], {name: [1.0]}, name),
        "baseline_vs_live": charts.baseline_vs_live(name, [0, 1, 2], [3, 4], {name: [1, 2]}),
        "ab_outcome_over_time": charts.ab_outcome_over_time({"stable": at}, {"stable": name},
                                                            name, True),
        "shap_importance": charts.shap_importance(importance, out),
        "shap_beeswarm": charts.shap_beeswarm([name, "b"], values, rows, importance[:1],
                                              output=out),
        "shap_dependence": charts.shap_dependence(name, [name, "b"], values, rows, output=out),
        "shap_waterfall": charts.shap_waterfall(0.2, [1.0, -0.5], [1, 2], ["a", name], out,
                                                labels=labels, classes=[0, 1]),
        "shap_waterfall multiclass": charts.shap_waterfall(
            0.2, [1.0], [1], ["a"], Output.parse("score of class 2", three), labels=three,
            classes=[0, 1, 2], predicted=2),
        "shap_waterfall probability": charts.shap_waterfall(
            0.2, [0.5], [1], ["a"], Output.parse("probability of class 1", labels),
            labels=labels, classes=[0, 1]),
    }


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_peoples_text_in_a_chart_is_never_markup_plotly_would_draw():
    """Plotly.js draws <a href> in a title, legend, hover text, tick or annotation as a live
    link: a class label '<a href="https://evil.example/login">benign</a>' must show as typed."""
    import re

    for name, figure in _every_figure_with(HOSTILE).items():
        assert figure, name
        texts = list(_strings(figure))
        for text in texts:
            markup = re.sub(r"</?(br|extra)>", "", text)
            assert "<" not in markup and ">" not in markup, (name, text)
        assert any("&lt;a href" in t for t in texts), name  # the name is there, escaped


def test_escaped_text_is_still_a_figure_plotly_accepts():
    import plotly.graph_objects as go

    for name, figure in _every_figure_with("a & b < c").items():
        go.Figure(figure)
        assert "a &amp; b &lt; c" in json.dumps(figure, ensure_ascii=False), name
