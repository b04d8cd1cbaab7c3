"""ops.serving.app, driven in-process as an ASGI app: every answer names who answered, and a
model answering NaN or infinity fails the request (a 5xx), not the caller's code."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import numpy as np
import orjson
import pytest

from ops.plan import ServingPlan, Variant
from ops.schema import Feature
from ops.serving.app import ModelServer
from ops.serving.metrics import ServerMetrics
from ops.serving.plans import PlanManager, ServingState
from ops.serving.routing import Router
from ops.serving.variants import NUMPY, BatchingOptions, LoadedVariant

ENDPOINT = "churn"
FEATURES = [Feature(name=n) for n in ("a", "b", "c")]
NAN, INF, BOOM = 666.0, 777.0, 999.0  # a first feature of this value: NaN, inf, an exception


class Scripted:
    """Answers 2 * a, or (classifier) P(1) = 0.25; NaN, +inf or an exception for the rows
    whose first feature asks for it. Records the rows of every predict call."""

    def __init__(self, classifier: bool = False):
        self.calls: list[int] = []
        if classifier:
            self.classes_ = np.array([0, 1])

    def _values(self, X, normal):
        X = np.asarray(X, dtype=float)
        self.calls.append(len(X))
        if (X[:, 0] == BOOM).any():
            raise ValueError("scripted failure")
        return np.where(X[:, 0] == NAN, np.nan, np.where(X[:, 0] == INF, np.inf, normal(X)))

    def predict(self, X):
        if hasattr(self, "classes_"):
            return np.zeros(len(X), dtype=int)
        return self._values(X, lambda X: 2 * X[:, 0])

    def predict_proba(self, X):
        p = self._values(X, lambda X: np.full(len(X), 0.25))
        return np.column_stack([1 - p, p])


def spec(name: str, version_id: int, number: int | None = None, weight: float = 1.0,
         task: str = "regression") -> Variant:
    return Variant(name=name, version_id=version_id, version_number=number,
                   artifact_uri=f"file:///m/{name}.skops", sha256="0" * 64, weight=weight,
                   task=task)


def server(*variants: tuple[Variant, object], generation: int = 3, shadow: str | None = None,
           batching: BatchingOptions | None = None):
    """A ModelServer whose plan is ``variants`` (spec, model), loaded without artifacts."""
    plan = ServingPlan(ENDPOINT, tuple(s for s, _ in variants), generation=generation,
                       shadow=shadow)
    metrics = ServerMetrics()
    manager = PlanManager(Path("/nonexistent/plan.json"), metrics, None,
                          batching or BatchingOptions())
    loaded = {s.name: LoadedVariant(s, model, FEATURES, mode=NUMPY,
                                    derive_labels=hasattr(model, "classes_"), load_seconds=0.0,
                                    executor=None, batching=batching or BatchingOptions())
              for s, model in variants}
    manager.state = ServingState(plan, loaded, Router(ENDPOINT, plan.weights()))
    return ModelServer(manager, metrics, shadow_tolerance=1e-2)


async def call(app, path: str, body=None, *, method: str = "POST",
               headers: tuple = ()) -> tuple[int, dict, object]:
    """(status, headers by lower-case name, JSON body or text)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else b""
    scope = {"type": "http", "method": method, "path": path,
             "headers": [(b"content-type", b"application/json"), *headers]}
    received = []

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        received.append(message)

    await app(scope, receive, send)
    start, answer = received
    found = {k.decode(): v.decode() for k, v in start["headers"]}
    text = answer["body"]
    is_json = found["content-type"] == "application/json"
    return start["status"], found, orjson.loads(text) if is_json else text.decode()


def run(coroutine):
    # In its own thread: browser tests may keep an event loop running in the main thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def infer(app, rows, path=f"/v2/models/{ENDPOINT}/infer"):
    return run(call(app, path, {"instances": rows}))


def sample(app, name: str, **labels) -> float:
    return app.metrics.registry.get_sample_value(name, {"endpoint": ENDPOINT, **labels}) or 0.0


# -- the version number and who answered ----------------------------------------------------

def test_answers_report_the_version_number_and_name_variant_version_and_generation():
    app = server((spec("candidate", version_id=7, number=4), Scripted()))
    status, headers, body = infer(app, [[1, 2, 3]])
    assert status == 200, body
    assert body["model_version"] == "4"
    assert (headers["x-variant"], headers["x-model-version"], headers["x-plan-generation"]) \
        == ("candidate", "4", "3")
    assert headers["x-prediction-id"]
    status, _, metadata = run(call(app, f"/v2/models/{ENDPOINT}", method="GET"))
    assert metadata["versions"] == ["4"]
    assert metadata["parameters"]["variants"][0]["version"] == "4"
    status, headers, body = run(call(app, "/invocations", {"instances": [[1, 2, 3]]}))
    assert (status, body["model_version"], headers["x-model-version"]) == (200, "4", "4")


def test_a_version_is_addressed_by_its_number_and_still_by_its_id():
    app = server((spec("stable", 7, number=4, weight=1.0), Scripted()),
                 (spec("candidate", 9, number=5, weight=1.0), Scripted()))
    for version, variant in (("4", "stable"), ("5", "candidate"), ("9", "candidate")):
        status, headers, _ = infer(app, [[1, 2, 3]],
                                   f"/v2/models/{ENDPOINT}/versions/{version}/infer")
        assert (status, headers["x-variant"]) == (200, variant)
    status, _, metadata = run(call(app, f"/v2/models/{ENDPOINT}", method="GET"))
    assert metadata["versions"] == ["4", "5"]


def test_a_version_that_is_one_variants_number_and_anothers_id_is_refused():
    """A caller pinned to id 5 from before plans carried numbers must not silently reach the
    variant numbered 5."""
    app = server((spec("stable", 5, number=2, weight=1.0), Scripted()),
                 (spec("candidate", 9, number=5, weight=1.0), Scripted()))
    status, _, body = infer(app, [[1, 2, 3]], f"/v2/models/{ENDPOINT}/versions/5/infer")
    assert (status, body["code"]) == (409, "ambiguous_version")


def test_a_plan_without_numbers_reports_the_id_as_before():
    app = server((spec("stable", version_id=7), Scripted()))
    status, headers, body = infer(app, [[1, 2, 3]])
    assert (status, body["model_version"], headers["x-model-version"]) == (200, "7", "7")


@pytest.mark.parametrize("rows, status, code", [
    ([[1, 2]], 400, "wrong_feature_count"),
    ([[BOOM, 2, 3]], 500, "predict_failed"),
    ([[NAN, 2, 3]], 500, "nonfinite_prediction"),
])
def test_errors_after_the_variant_is_chosen_name_variant_version_and_generation(rows, status,
                                                                                 code):
    app = server((spec("candidate", version_id=7, number=4), Scripted()))
    got, headers, body = infer(app, rows)
    assert (got, body["code"]) == (status, code), body
    assert (headers["x-variant"], headers["x-model-version"], headers["x-plan-generation"]) \
        == ("candidate", "4", "3")
    assert (body["variant"], body["model_version"], body["generation"]) == ("candidate", "4", 3)
    assert sample(app, "modelgate_requests_total", variant="candidate",
                  status=f"{status // 100}xx") == 1
    assert sample(app, "modelgate_request_errors_total", variant="candidate", code=code) == 1


def test_errors_before_a_variant_is_chosen_carry_the_generation_only():
    app = server((spec("candidate", version_id=7, number=4), Scripted()))
    for path, body in ((f"/v2/models/{ENDPOINT}/infer", b"{nope"),
                       ("/v2/models/nope/infer", {"instances": [[1, 2, 3]]})):
        status, headers, answer = run(call(app, path, body))
        assert status in (400, 404)
        assert headers["x-plan-generation"] == "3"
        assert "x-variant" not in headers and "x-model-version" not in headers
        assert answer["generation"] == 3 and "variant" not in answer
    status, headers, _ = run(call(app, f"/v2/models/{ENDPOINT}/infer", method="GET"))
    assert (status, headers["x-plan-generation"]) == (405, "3")


def test_not_ready_says_no_generation_it_does_not_have():
    app = server((spec("candidate", 7, number=4), Scripted()))
    app.manager.state = None
    status, headers, body = infer(app, [[1, 2, 3]])
    assert (status, body["code"]) == (503, "not_ready")
    assert not {"x-variant", "x-plan-generation"} & set(headers)


def test_an_unexpected_failure_is_a_500_counted_against_the_variant(monkeypatch):
    app = server((spec("candidate", 7, number=4), Scripted()))
    monkeypatch.setattr("ops.serving.app.new_prediction_ids",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
    status, headers, body = infer(app, [[1, 2, 3]])
    assert (status, body["code"], headers["x-variant"]) == (500, "internal", "candidate")
    assert sample(app, "modelgate_request_errors_total", variant="candidate",
                  code="internal") == 1


# -- NaN and infinity -----------------------------------------------------------------------

@pytest.mark.parametrize("task, bad", [("regression", NAN), ("regression", INF),
                                       ("classification", NAN), ("classification", INF)])
def test_a_nan_or_infinite_prediction_fails_the_request_as_a_server_error(task, bad):
    model = Scripted(classifier=task == "classification")
    app = server((spec("candidate", 7, number=4, task=task), model))
    status, _, body = infer(app, [[1, 2, 3], [bad, 2, 3], [2, 2, 3]])
    assert (status, body["code"]) == (500, "nonfinite_prediction"), body
    assert "1 of the request's 3 rows" in body["error"] and "outputs" not in body
    assert sample(app, "modelgate_requests_total", variant="candidate", status="5xx") == 1
    assert sample(app, "modelgate_request_errors_total", variant="candidate",
                  code="nonfinite_prediction") == 1
    assert infer(app, [[1, 2, 3]])[0] == 200


def test_in_a_shared_batch_only_the_requests_with_nonfinite_rows_fail():
    model = Scripted()
    # A long window without early dispatch: the three requests share one predict call.
    app = server((spec("candidate", 7, number=4), model),
                 batching=BatchingOptions(timeout=0.2, idle_rounds=0))

    async def scenario():
        return await asyncio.gather(*(call(app, f"/v2/models/{ENDPOINT}/infer",
                                           {"instances": rows})
                                      for rows in ([[1, 2, 3]], [[NAN, 2, 3], [1, 1, 1]],
                                                   [[3, 2, 3]])))

    answers = run(scenario())
    assert model.calls == [4]
    assert [a[0] for a in answers] == [200, 500, 200]
    assert answers[1][2]["code"] == "nonfinite_prediction"
    assert [a[2]["outputs"][0]["data"] for a in (answers[0], answers[2])] == [[2.0], [6.0]]
    # Only the answered rows enter the live distribution of predicted values.
    variant = app.manager.state.variants["candidate"]
    assert variant.value_histogram.snapshot()[0][-1] == ("+Inf", 2)


class AlwaysNaN(Scripted):
    def predict(self, X):
        return np.full(len(X), np.nan)


def test_a_shadow_answering_nan_counts_as_an_error_not_a_comparison():
    app = server((spec("stable", 7, number=4), Scripted()),
                 (spec("mirror", 9, number=5, weight=0.0), AlwaysNaN()), shadow="mirror")

    async def scenario():
        answer = await call(app, f"/v2/models/{ENDPOINT}/infer", {"instances": [[1, 2, 3]]})
        for _ in range(200):  # the shadow answers after the caller has its answer
            if sample(app, "modelgate_shadow_comparisons_total", variant="mirror",
                      result="error"):
                break
            await asyncio.sleep(0.01)
        return answer

    status, headers, _ = run(scenario())
    assert (status, headers["x-variant"]) == (200, "stable")
    compared = {result: sample(app, "modelgate_shadow_comparisons_total", variant="mirror",
                               result=result) for result in ("agree", "disagree", "error")}
    assert compared == {"agree": 0, "disagree": 0, "error": 1}
