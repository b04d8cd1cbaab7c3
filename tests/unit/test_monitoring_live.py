"""portal.monitoring.live: an endpoint's live charts keep requests refused for what the
caller sent (4xx) apart from the version's server errors (5xx), per variant."""

from __future__ import annotations

from types import SimpleNamespace

from ops import drift as ops_drift
from ops import promql
from portal.monitoring import drift, live

NOW = 1_700_000_000.0


class FakePrometheus:
    """Answers each chart's query with one point per variant; records what was asked."""

    def __init__(self):
        self.asked: list[str] = []

    def query_range(self, query, start, end, step):
        self.asked.append(query)
        if 'status="4xx"' in query:
            shares = {"stable": "0.02", "candidate": "0.25"}
        elif 'status="5xx"' in query:
            shares = {"stable": "0", "candidate": "0.01"}
        else:
            shares = {"stable": "1", "candidate": "1"}
        return [{"metric": {"variant": name}, "values": [[NOW, value]]}
                for name, value in shares.items()]

    def query(self, query):
        self.asked.append(query)
        return [{"metric": {"variant": "stable", "class": "1"}, "value": [NOW, "3"]}]


def served() -> SimpleNamespace:
    options = SimpleNamespace(max_error_rate=0.05, max_p99_latency_seconds=0.5)
    return SimpleNamespace(environment=SimpleNamespace(name="production",
                                                       project=SimpleNamespace(slug="crm")),
                           endpoint="churn", only_variant=None,
                           variants={}, settings=lambda: options)


def lines(figure: dict) -> dict[str, list]:
    return {trace["name"]: trace["y"] for trace in figure["data"]}


def test_rejected_requests_and_server_errors_are_charted_apart_per_variant(monkeypatch):
    prometheus = FakePrometheus()
    monkeypatch.setattr(drift, "client", lambda: prometheus)
    charts, _, unavailable = live.live_charts(served(), 900, None, ops_drift.Thresholds(), [],
                                              None)
    assert unavailable == ""
    rejects, errors = charts["rejects"], charts["errors"]
    assert rejects["layout"]["title"]["text"] == "Rejected requests (4xx), share of requests"
    assert errors["layout"]["title"]["text"] == "Server errors (5xx), share of requests"
    assert lines(rejects) == {"candidate": [25.0], "stable": [2.0]}
    assert lines(errors) == {"candidate": [1.0], "stable": [0.0]}
    # The error threshold judges the version: drawn on the 5xx chart only.
    assert errors["layout"]["shapes"] and not rejects["layout"]["shapes"]
    where = promql.selector(environment="production", project="crm", endpoint="churn")
    assert promql.client_error_rate(where, "60s", by="variant",
                                    zero_without_errors=True) in prometheus.asked


def test_client_error_rate_is_the_share_of_4xx_among_all_requests():
    expression = promql.client_error_rate('endpoint="churn"', "1m", by="variant")
    assert expression == (
        'sum by (variant) (rate(modelgate_requests_total{endpoint="churn",status="4xx"}[1m]))'
        ' / sum by (variant) (rate(modelgate_requests_total{endpoint="churn"}[1m]))')


def test_requests_refused_before_routing_are_named_and_kept_off_the_rate_charts(monkeypatch):
    class Unrouted(FakePrometheus):
        def query_range(self, query, start, end, step):
            rows = super().query_range(query, start, end, step)
            return [*rows, {"metric": {"variant": "none"}, "values": [[NOW, "1"]]}]

    monkeypatch.setattr(drift, "client", lambda: Unrouted())
    marks = [{"at": NOW, "label": "v2 25%"}]
    charts, _, _ = live.live_charts(served(), 900, None, ops_drift.Thresholds(), [], None,
                                    marks=marks)
    assert set(lines(charts["traffic"])) == {"stable", "candidate", "refused before routing"}
    for name in ("errors", "rejects", "latency"):
        assert not any(n.startswith("none") for n in lines(charts[name])), name
    assert [a["text"] for a in charts["errors"]["layout"]["annotations"]] == ["v2 25%"]


def test_the_drift_badge_takes_the_worst_verdict():
    from portal.monitoring.views import drift_summary

    summary = drift_summary([{"verdict": "critical"}] * 5 + [{"verdict": "no_drift"}] * 25)
    assert summary["worst"] == "critical" and summary["drifted"] == 5
    assert summary["total"] == 30
    assert drift_summary([{"verdict": "warning"}, {"verdict": "no_drift"}])["worst"] == "warning"
    assert drift_summary([])["worst"] == "insufficient_data"


def test_predicted_classes_carry_the_names_the_model_gives_them(monkeypatch):
    monkeypatch.setattr(drift, "client", lambda: FakePrometheus())
    endpoint = served()
    endpoint.variants = {"stable": SimpleNamespace(class_labels={"0": "malignant",
                                                                 "1": "benign"})}
    charts, _, _ = live.live_charts(endpoint, 900, None, ops_drift.Thresholds(), [], None)
    bars = charts["predictions"]["data"]
    assert [list(trace["x"]) for trace in bars] == [["benign"]]


def test_a_multimodel_members_charts_ask_for_its_own_series_only(monkeypatch):
    """A member of a multi-model endpoint (``ServedMultiModel.member``) shares the endpoint's
    series with the other members: every chart selects its variant label."""
    prometheus = FakePrometheus()
    monkeypatch.setattr(drift, "client", lambda: prometheus)
    member = served()
    member.endpoint, member.only_variant = "mme-tenants-env-3", "churn"
    _, _, unavailable = live.live_charts(member, 900, "churn", ops_drift.Thresholds(), [],
                                         None)
    assert unavailable == "" and prometheus.asked
    mine = 'endpoint="mme-tenants-env-3",variant="churn"'
    assert all(mine in query for query in prometheus.asked), prometheus.asked
