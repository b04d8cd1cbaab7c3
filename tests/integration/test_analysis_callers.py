"""Rollout analysis on real parts: two variants in a real model server, real traffic, a real
Prometheus scraping it, and ``PrometheusAnalyzer`` reading what callers felt.

The candidates here misbehave in ways that answer no 5xx: one refuses every request (it
was trained on other features: 400 ``wrong_feature_count``), one predicts a single class.
The analysis of old judged only 5xx and latency and passed both. The plans are applied to
the local backend directly (no portal), so the portal's own checks before traffic (the
interface comparison) do not stop the bad candidate first: the analysis is the last line.
"""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest
import requests

from ops.analysis import PrometheusAnalyzer
from ops.artifacts import dump_skops
from ops.backends import get_backend
from ops.plan import ServingPlan, Variant
from ops.rollout import Strategy, Thresholds, Verdict, evaluate
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import FEATURES

pytestmark = pytest.mark.integration

ENDPOINT = "tumor"
THRESHOLDS = Thresholds(min_requests=20, max_p99_ratio=20.0)


def _variant(tmp_path, name: str, model, weight: float, features=FEATURES,
             task: str = "classification") -> Variant:
    data = dump_skops(model)
    path = tmp_path / f"{name}.skops"
    path.write_bytes(data)
    return Variant(name=name, version_id=1 if name == "stable" else 2,
                   artifact_uri=f"file://{path}", sha256=hashlib.sha256(data).hexdigest(),
                   weight=weight, input_schema=[{"name": f, "type": "double"} for f in features],
                   task=task)


def _fitted(n_features: int, seed: int = 0):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, n_features))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


def _constant():
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="constant", constant=1).fit(np.zeros((4, len(FEATURES))),
                                                               [0, 1, 0, 1])


class Traffic:
    """Callers sending varied rows of the stable's interface from a thread."""

    def __init__(self, url: str):
        self.url, self.stop, self.statuses = url, threading.Event(), []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        rng, session = np.random.default_rng(7), requests.Session()
        while not self.stop.is_set():
            rows = rng.normal(size=(2, len(FEATURES))).round(3).tolist()
            try:
                answer = session.post(f"{self.url}/v2/models/{ENDPOINT}/infer",
                                      json={"instances": rows}, timeout=5)
                self.statuses.append((answer.status_code, answer.headers.get("x-variant")))
            except requests.RequestException:
                self.statuses.append((0, None))
            time.sleep(0.01)

    def run_for(self, seconds: float):
        self.thread.start()
        time.sleep(seconds)
        self.stop.set()
        self.thread.join(timeout=10)
        return self


@pytest.fixture
def served(tmp_path, prometheus):
    """``serve(*variants)`` → (server URL, analyzer), the plan applied and scraped."""
    port = free_port()
    backend = get_backend("local", {"state_dir": str(tmp_path / "serving"), "port": port,
                                    "ready_timeout": 60})
    analyzer = PrometheusAnalyzer(prometheus([f"127.0.0.1:{port}"]))
    generation = [0]

    def serve(*variants: Variant):
        generation[0] += 1
        backend.apply(ServingPlan(endpoint=ENDPOINT, variants=variants,
                                  generation=generation[0]))
        return f"http://127.0.0.1:{port}", analyzer

    yield serve
    backend.delete(ENDPOINT)


def _measured(analyzer, window=60, baseline=None, settle=3.0):
    time.sleep(settle)  # two more scrapes (1 s apart) after the last request
    return analyzer.measure(ENDPOINT, window, environment="production",
                            baseline_seconds=baseline)


def _by_metric(evaluation):
    return {m.metric: m for m in evaluation.measurements}


def test_a_candidate_refusing_every_caller_fails_though_it_answers_no_5xx(tmp_path, served):
    url, analyzer = served(_variant(tmp_path, "stable", _fitted(len(FEATURES)), 0.5),
                           _variant(tmp_path, "candidate", _fitted(3), 0.5, FEATURES[:3]))
    traffic = Traffic(url).run_for(6)
    refused = [s for s, v in traffic.statuses if v == "candidate"]
    assert refused and set(refused) == {400}, set(refused)
    measured = _measured(analyzer)
    assert not measured.error, measured.error
    assert measured.analysis.client_error_rate == pytest.approx(1.0)
    assert measured.analysis.stable_client_error_rate == pytest.approx(0.0)
    evaluation = evaluate(measured.analysis, THRESHOLDS, Strategy.CANARY)
    by = _by_metric(evaluation)
    assert evaluation.verdict == Verdict.FAIL
    assert by["client_error_excess"].verdict == Verdict.FAIL, by["client_error_excess"]
    assert by["error_rate"].verdict == Verdict.PASS  # all the analysis of old looked at
    # Scoped by project too: the scrape labels this server's series with its project, and
    # another project's production/<same endpoint> is not this rollout's evidence.
    mine = analyzer.measure(ENDPOINT, 60, environment="production", project="clinical-ml")
    assert mine.analysis.client_error_rate == pytest.approx(1.0)
    assert 'project=~"clinical-ml|"' in mine.queries["requests"]
    theirs = analyzer.measure(ENDPOINT, 60, environment="production", project="elsewhere")
    assert theirs.analysis.requests is None and theirs.analysis.client_error_rate is None


def test_a_candidate_predicting_one_class_fails_on_the_same_traffic(tmp_path, served):
    url, analyzer = served(_variant(tmp_path, "stable", _fitted(len(FEATURES)), 0.5),
                           _variant(tmp_path, "candidate", _constant(), 0.5))
    traffic = Traffic(url).run_for(6)
    assert {s for s, _ in traffic.statuses} == {200}
    measured = _measured(analyzer)
    predicted = measured.analysis.predictions
    assert predicted["1"] > 0 and not predicted.get("0"), predicted
    assert all(measured.analysis.stable_predictions.values())
    evaluation = evaluate(measured.analysis, THRESHOLDS, Strategy.CANARY)
    shift = _by_metric(evaluation)["prediction_shift"]
    assert evaluation.verdict == Verdict.FAIL and "one class only" in shift.detail, shift


def test_a_retrained_candidate_passes_and_at_100_percent_the_stable_is_taken_from_before(
        tmp_path, served):
    stable = _variant(tmp_path, "stable", _fitted(len(FEATURES), seed=0), 0.5)
    candidate = _variant(tmp_path, "candidate", _fitted(len(FEATURES), seed=1), 0.5)
    url, analyzer = served(stable, candidate)
    Traffic(url).run_for(6)
    evaluation = evaluate(_measured(analyzer).analysis, THRESHOLDS, Strategy.CANARY)
    assert evaluation.verdict == Verdict.PASS, evaluation.why(evaluation.verdict)

    # The last step: the candidate takes everything, the stable nothing.
    served(Variant(**{**stable.__dict__, "weight": 0.0}),
           Variant(**{**candidate.__dict__, "weight": 1.0}))
    Traffic(url).run_for(8)
    time.sleep(2.5)
    now_only = analyzer.measure(ENDPOINT, 6, environment="production")
    assert now_only.analysis.requests >= THRESHOLDS.min_requests
    assert now_only.analysis.stable_p99_latency is None  # nothing to divide by, as before
    measured = analyzer.measure(ENDPOINT, 6, environment="production", baseline_seconds=90)
    assert measured.analysis.stable_p99_latency is not None
    assert any("over the rollout so far" in key for key in measured.queries)
    evaluation = evaluate(measured.analysis, THRESHOLDS, Strategy.CANARY)
    assert evaluation.verdict == Verdict.PASS, evaluation.why(evaluation.verdict)


def test_a_regressor_answering_a_constant_fails_on_its_spread(tmp_path, served):
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, len(FEATURES)))
    y = x @ np.arange(1, len(FEATURES) + 1) * 10.0
    url, analyzer = served(
        _variant(tmp_path, "stable", LinearRegression().fit(x, y), 0.5, task="regression"),
        _variant(tmp_path, "candidate", DummyRegressor(constant=42.0, strategy="constant")
                 .fit(x, y), 0.5, task="regression"))
    traffic = Traffic(url).run_for(6)
    assert {s for s, _ in traffic.statuses} == {200}
    measured = _measured(analyzer)
    assert measured.analysis.prediction_spread == pytest.approx(0.0, abs=1e-3)
    assert measured.analysis.stable_prediction_spread > 10
    evaluation = evaluate(measured.analysis, THRESHOLDS, Strategy.CANARY)
    spread = _by_metric(evaluation)["prediction_spread_ratio"]
    assert evaluation.verdict == Verdict.FAIL and spread.verdict == Verdict.FAIL, spread
