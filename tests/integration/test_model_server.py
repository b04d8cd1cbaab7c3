"""The model server as a real process: protocols, routing, metrics, safety, reloads, overload.

Two servers start once for the module, in parallel: the main one (``--plan --port``) and one
in SageMaker mode (``serve`` with ``SAGEMAKER_BIND_TO_PORT``) with a tiny queue and a long
batch window for the overload and SIGHUP tests. Tests switch the main server's plan by
rewriting its plan file, the way a backend does, and wait for the generation to change.
No Django, no database.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from ops.artifacts import dump_skops
from ops.profile import profile_frame
from ops.serving import parse_prediction_id
from ops.serving.variants import PICKLE_ENV

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "cancer"
MAX_BODY = 1_000_000
pytestmark = pytest.mark.integration


# -- models, plans and servers -------------------------------------------------------------

class Artifacts:
    """Tiny sklearn models on breast_cancer's first 5 features, stored in a tmp folder."""

    def __init__(self, folder: Path):
        data = load_breast_cancer(as_frame=True)
        self.frame = data.data.iloc[:, :5]
        self.names = list(self.frame.columns)
        target = data.target
        self.rows = self.frame.to_numpy()
        self.profile = profile_frame(self.frame)
        self.folder = folder
        self.models = {
            "blue": make_pipeline(StandardScaler(), LogisticRegression()).fit(self.frame, target),
            "green": RandomForestClassifier(n_estimators=10, random_state=0)
            .fit(self.frame, target),
            "red": DecisionTreeClassifier(max_depth=4, random_state=0).fit(self.frame, target),
        }
        self.files = {}
        for name, model in self.models.items():
            path = folder / f"{name}.skops"
            path.write_bytes(dump_skops(model))
            self.files[name] = path
        pickled = folder / "pickled.joblib"
        joblib.dump(self.models["blue"], pickled)
        self.files["pickled"] = pickled

    def variant(self, name: str, weight: float, *, model: str | None = None, version: int = 0,
                **extra) -> dict:
        path = self.files[model or name]
        entry = {"name": name, "version_id": version or (list(self.files).index(model or name) + 1),
                 "artifact_uri": f"file://{path}",
                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "weight": weight,
                 "input_schema": [{"name": n, "type": "double"} for n in self.names],
                 "baseline": self.profile}
        entry.update(extra)
        return entry


class ServerProcess:
    def __init__(self, name: str, plan_path: Path, argv: list[str], env: dict, log: Path):
        self.name = name
        self.plan_path = plan_path
        self.port = int(env.get("SAGEMAKER_BIND_TO_PORT") or argv[argv.index("--port") + 1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.generation = 0
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ops.serving", *argv], cwd=ROOT,
            env={**os.environ, **env}, stdout=open(log, "wb"), stderr=subprocess.STDOUT)

    def write_plan(self, plan: dict | str) -> None:
        text = plan if isinstance(plan, str) else json.dumps(plan)
        partial = self.plan_path.with_suffix(".partial")
        partial.write_text(text)
        os.replace(partial, self.plan_path)  # the server never reads a half-written plan

    def apply(self, variants: list[dict], wait: bool = True, **plan) -> int:
        """Write a new plan generation and wait until the server serves it."""
        self.generation += 1
        self.write_plan({"endpoint": ENDPOINT, "generation": self.generation,
                         "variants": variants, **plan})
        if wait:
            self.wait_generation(self.generation)
        return self.generation

    def ready(self) -> dict:
        return requests.get(f"{self.base}/v2/health/ready", timeout=5).json()

    def wait_generation(self, generation: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.ready().get("generation") == generation:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not reach generation {generation}: "
                             f"{self.log.read_text()[-3000:]}")

    def wait_failure(self, code: str, since: float, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            error = self.ready().get("last_error")
            if error and error["at"] >= since and error["code"] == code:
                return error
            time.sleep(0.05)
        raise AssertionError(f"no {code} failure reported: {self.ready()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Artifacts:
    return Artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def servers(artifacts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("servers")
    main_plan = folder / "main-plan.json"
    sm_plan = folder / "sm-plan.json"
    main_plan.write_text(json.dumps({"endpoint": ENDPOINT, "generation": 1, "variants": [
        artifacts.variant("blue", 0.7), artifacts.variant("green", 0.3)]}))
    sm_plan.write_text(json.dumps({"endpoint": ENDPOINT, "generation": 1, "variants": [
        artifacts.variant("blue", 1.0)]}))
    main = ServerProcess(
        "main", main_plan,
        ["--plan", str(main_plan), "--port", str(free_port()), "--max-body-bytes", str(MAX_BODY),
         "--poll-interval", "0.2", "--log-level", "warning"],
        # Its operator lets it load pickles (the portal never starts a server so).
        {PICKLE_ENV: "true"}, folder / "main.log")
    # SageMaker mode; a 500 ms window with early dispatch off and room for 2 queued rows:
    # the first requests wait in the queue, every other one must be refused at once.
    # The plan file is polled once an hour, so only SIGHUP reloads it.
    sagemaker = ServerProcess(
        "sagemaker", sm_plan,
        ["serve", "--plan", str(sm_plan), "--max-queue", "2", "--batch-timeout-ms", "500",
         "--batch-idle-rounds", "0", "--poll-interval", "3600", "--log-level", "warning"],
        {"SAGEMAKER_BIND_TO_PORT": str(free_port())}, folder / "sagemaker.log")
    try:
        main.generation = sagemaker.generation = 1
        main.wait_generation(1, timeout=60)
        sagemaker.wait_generation(1, timeout=60)
        yield {"main": main, "sagemaker": sagemaker}
    finally:
        main.stop()
        sagemaker.stop()


@pytest.fixture
def server(servers, artifacts) -> ServerProcess:
    """The main server, serving blue 70 % / green 30 % unless a test changes it."""
    main = servers["main"]
    try:
        plan = json.loads(main.plan_path.read_text())
    except ValueError:  # a test left a broken plan file behind on purpose
        plan = {}
    names = {v["name"]: v["weight"] for v in plan.get("variants", [])}
    if names != {"blue": 0.7, "green": 0.3} or plan.get("sticky") or plan.get("shadow") \
            or main.ready().get("generation") != main.generation:
        main.apply([artifacts.variant("blue", 0.7), artifacts.variant("green", 0.3)])
    return main


# -- helpers -------------------------------------------------------------------------------

def oip(rows) -> dict:
    rows = np.asarray(rows, dtype=float)
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.tolist()}]}


def infer(base: str, rows, name: str = ENDPOINT, session=requests, **kwargs):
    return session.post(f"{base}/v2/models/{name}/infer", json=oip(rows), timeout=10, **kwargs)


def scrape(base: str) -> dict:
    """{(sample name, frozenset(labels)): value} from /metrics."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


# -- protocols -----------------------------------------------------------------------------

def test_oip_infer_answers_with_the_variant_and_recoverable_prediction_ids(server, artifacts):
    rows = artifacts.rows[:3]
    answer = infer(server.base, rows)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    variant = body["parameters"]["variant"]
    assert variant in ("blue", "green") and answer.headers["X-Variant"] == variant
    assert body["model_name"] == ENDPOINT
    assert body["model_version"] == str({"blue": 1, "green": 2}[variant])
    outputs = {o["name"]: o for o in body["outputs"]}
    expected = artifacts.models[variant]
    assert outputs["predict"]["data"] == expected.predict(artifacts.frame.iloc[:3]).tolist()
    assert outputs["predict_proba"]["shape"] == [3, 2]
    np.testing.assert_allclose(np.reshape(outputs["predict_proba"]["data"], (3, 2)),
                               expected.predict_proba(artifacts.frame.iloc[:3]), rtol=1e-9)
    ids = body["parameters"]["prediction_ids"]
    assert len(ids) == 3
    for row, pid in enumerate(ids):
        parsed = parse_prediction_id(pid)
        assert (parsed.variant, parsed.generation, parsed.row) == (variant, server.generation, row)
    assert parse_prediction_id(answer.headers["X-Prediction-Id"]).variant == variant


def test_per_feature_inputs_instances_and_an_explicit_variant(server, artifacts):
    row = artifacts.rows[10]
    per_feature = {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
                              for n, v in zip(artifacts.names, row, strict=True)],
                   "id": "my-request"}
    answer = requests.post(f"{server.base}/v2/models/green/infer", json=per_feature, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == "my-request"
    assert answer.json()["parameters"]["variant"] == "green"
    instances = requests.post(f"{server.base}/v2/models/{ENDPOINT}/versions/1/infer",
                              json={"instances": [row.tolist()]}, timeout=10)
    assert instances.status_code == 200 and instances.headers["X-Variant"] == "blue"


def test_sagemaker_ping_and_invocations_json_and_csv(servers, artifacts):
    sm = servers["sagemaker"]
    assert requests.get(f"{sm.base}/ping", timeout=5).status_code == 200
    rows = artifacts.rows[:2]
    answer = requests.post(f"{sm.base}/invocations", json={"instances": rows.tolist()},
                           timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = artifacts.models["blue"].predict_proba(artifacts.frame.iloc[:2])
    np.testing.assert_allclose(body["probabilities"], expected, rtol=1e-9)
    assert body["variant"] == "blue" and len(body["prediction_ids"]) == 2
    csv = "\n".join(",".join(str(v) for v in r) for r in rows)
    answer = requests.post(f"{sm.base}/invocations", data=csv,
                           headers={"Content-Type": "text/csv", "Accept": "text/csv"},
                           timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.text.split() == [str(v) for v in
                                   artifacts.models["blue"].predict(artifacts.frame.iloc[:2])]


def test_metadata_lists_inputs_versions_variants_weights_and_generation(server, artifacts):
    body = requests.get(f"{server.base}/v2/models/{ENDPOINT}", timeout=5).json()
    assert [i["name"] for i in body["inputs"]] == artifacts.names
    assert body["versions"] == ["1", "2"]
    parameters = body["parameters"]
    assert parameters["generation"] == server.generation
    shares = {v["name"]: v["share"] for v in parameters["variants"]}
    assert shares == pytest.approx({"blue": 0.7, "green": 0.3})
    assert {o["name"] for o in body["outputs"]} == {"predict", "predict_proba"}
    one = requests.get(f"{server.base}/v2/models/green", timeout=5).json()
    assert one["versions"] == ["2"]
    assert requests.get(f"{server.base}/v2/models/nope", timeout=5).status_code == 404
    assert requests.get(f"{server.base}/v2/health/live", timeout=5).json() == {"live": True}


def test_answers_report_the_version_number_the_plan_carries(server, artifacts):
    server.apply([artifacts.variant("blue", 1.0, version=7, version_number=4)])
    answer = infer(server.base, artifacts.rows[:1])
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "4"
    assert (answer.headers["X-Variant"], answer.headers["X-Model-Version"],
            answer.headers["X-Plan-Generation"]) == ("blue", "4", str(server.generation))
    metadata = requests.get(f"{server.base}/v2/models/{ENDPOINT}", timeout=5).json()
    assert metadata["versions"] == ["4"]
    by_number = requests.post(f"{server.base}/v2/models/{ENDPOINT}/versions/4/infer",
                              json={"instances": [artifacts.rows[0].tolist()]}, timeout=10)
    assert by_number.status_code == 200 and by_number.headers["X-Model-Version"] == "4"
    refused = infer(server.base, [[1.0, 2.0]])
    assert refused.status_code == 400
    assert (refused.json()["model_version"], refused.headers["X-Model-Version"]) == ("4", "4")


def test_a_regressor_answering_infinity_fails_the_request_as_a_counted_server_error(
        server, artifacts):
    model = LinearRegression().fit(artifacts.frame, artifacts.frame.iloc[:, 0])
    model.coef_ = np.full_like(model.coef_, np.inf)  # every positive input overflows
    path = artifacts.folder / "infinite.skops"
    path.write_bytes(dump_skops(model))
    broken = {**artifacts.variant("blue", 0.0), "name": "infinite", "task": "regression",
              "artifact_uri": f"file://{path}",
              "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "version_number": 9}
    server.apply([artifacts.variant("blue", 1.0), broken])
    before = scrape(server.base)
    answer = infer(server.base, artifacts.rows[:2], name="infinite")
    assert answer.status_code == 500, answer.text
    body = answer.json()
    assert (body["code"], body["variant"], body["model_version"]) == \
        ("nonfinite_prediction", "infinite", "9")
    assert answer.headers["X-Model-Version"] == "9"
    after = scrape(server.base)
    for name, labels in (("modelgate_requests_total", {"status": "5xx"}),
                         ("modelgate_request_errors_total", {"code": "nonfinite_prediction"})):
        assert value(after, name, endpoint=ENDPOINT, variant="infinite", **labels) - \
            value(before, name, endpoint=ENDPOINT, variant="infinite", **labels) == 1


# -- routing -------------------------------------------------------------------------------

def test_weighted_split_over_2000_requests(server, artifacts):
    rows = artifacts.rows

    def client(k: int) -> list[str]:
        seen = []
        with requests.Session() as session:
            for i in range(250):
                answer = infer(server.base, rows[(k * 250 + i) % len(rows)][None, :],
                               session=session)
                assert answer.status_code == 200, answer.text
                variant = answer.headers["X-Variant"]
                assert parse_prediction_id(answer.headers["X-Prediction-Id"]).variant == variant
                seen.append(variant)
        return seen

    with ThreadPoolExecutor(8) as pool:
        counts = Counter(v for seen in pool.map(client, range(8)) for v in seen)
    assert sum(counts.values()) == 2000
    # 30 % of 2000 = 600, standard deviation ~20.5: +-90 is over 4 sigma.
    assert abs(counts["green"] - 600) < 90, counts


def test_sticky_unit_ids_always_reach_the_same_variant(server, artifacts):
    server.apply([artifacts.variant("blue", 0.5), artifacts.variant("green", 0.5)], sticky=True)
    assigned = {}
    with requests.Session() as session:
        for unit in (f"customer-{i}" for i in range(40)):
            seen = set()
            for attempt in range(4):
                if attempt % 2:
                    answer = infer(server.base, artifacts.rows[:1], session=session,
                                   headers={"X-Unit-Id": unit})
                else:
                    body = {**oip(artifacts.rows[:1]), "parameters": {"unit_id": unit}}
                    answer = session.post(f"{server.base}/v2/models/{ENDPOINT}/infer",
                                          json=body, timeout=10)
                assert answer.status_code == 200, answer.text
                seen.add(answer.headers["X-Variant"])
            assert len(seen) == 1, (unit, seen)
            assigned[unit] = seen.pop()
    assert set(assigned.values()) == {"blue", "green"}


def test_shadow_gets_a_copy_and_agreement_is_counted(server, artifacts):
    server.apply([artifacts.variant("blue", 1.0), artifacts.variant("green", 0.0)],
                 shadow="green")
    before = scrape(server.base)
    with requests.Session() as session:
        for i in range(40):
            answer = infer(server.base, artifacts.rows[i:i + 1], session=session)
            assert answer.headers["X-Variant"] == "blue"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = scrape(server.base)
        compared = sum(value(after, "modelgate_shadow_comparisons_total", endpoint=ENDPOINT,
                             variant="green", result=r) -
                       value(before, "modelgate_shadow_comparisons_total", endpoint=ENDPOINT,
                             variant="green", result=r) for r in ("agree", "disagree"))
        if compared == 40:
            break
        time.sleep(0.1)
    assert compared == 40
    agree = (value(after, "modelgate_shadow_comparisons_total", endpoint=ENDPOINT,
                   variant="green", result="agree")
             - value(before, "modelgate_shadow_comparisons_total", endpoint=ENDPOINT,
                     variant="green", result="agree"))
    assert agree > 30  # a forest and a logistic regression mostly agree on this data
    assert value(after, "modelgate_shadow_duration_seconds_count", endpoint=ENDPOINT,
                 variant="green") >= 40


# -- metrics -------------------------------------------------------------------------------

def test_metrics_expose_requests_latency_predictions_and_feature_bins(server, artifacts):
    requests.post(f"{server.base}/v2/models/{ENDPOINT}/infer", data=b"nope", timeout=5)
    before = scrape(server.base)
    rows = artifacts.rows[100:160]
    for start in range(0, 60, 20):  # explicit variant, so every row is counted for blue
        assert infer(server.base, rows[start:start + 20], name="blue").status_code == 200
    after = scrape(server.base)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("modelgate_requests_total", endpoint=ENDPOINT, variant="blue",
                 status="2xx") == 3
    assert delta("modelgate_request_duration_seconds_count", endpoint=ENDPOINT,
                 variant="blue") == 3
    predicted = artifacts.models["blue"].predict(artifacts.frame.iloc[100:160])
    for label in (0, 1):
        assert delta("modelgate_predictions_total", endpoint=ENDPOINT, variant="blue",
                     **{"class": str(label)}) == int((predicted == label).sum())
    # Feature bins: the baseline's edges, counted exactly as ops/profile.py counts.
    for column, feature in enumerate(artifacts.names):
        edges = artifacts.profile["features"][feature]["edges"]
        expected = np.bincount(np.searchsorted(edges[1:-1], rows[:, column], side="right"),
                               minlength=len(edges) - 1)
        got = [delta("modelgate_feature_bin_total", endpoint=ENDPOINT, variant="blue",
                     feature=feature, bin=str(b)) for b in range(len(edges) - 1)]
        assert got == expected.tolist(), feature
    assert value(after, "modelgate_request_errors_total", endpoint=ENDPOINT, variant="none",
                 code="invalid_json") >= 1
    for name in ("modelgate_batch_size_rows_count", "modelgate_batch_requests_count",
                 "modelgate_queue_depth", "modelgate_model_load_seconds",
                 "modelgate_variant_weight", "modelgate_feature_missing_total"):
        assert total(after, name, endpoint=ENDPOINT, variant="blue") >= 0
        assert any(n == name for n, _ in after), name
    assert value(after, "modelgate_plan_generation", endpoint=ENDPOINT) == server.generation
    assert (("modelgate_plan_load_failures_total", frozenset({("endpoint", ENDPOINT)}))
            in after)
    # What computes each variant (decision 63): the forest through onnxruntime, proven exact.
    assert value(after, "modelgate_variant_predictor", endpoint=ENDPOINT, variant="green",
                 predictor="onnxruntime", reason="exact") == 1
    assert value(after, "modelgate_variant_predictor", endpoint=ENDPOINT, variant="blue",
                 predictor="model", reason="not_a_tree_ensemble") == 1
    labels = {k for (_, ls) in after for k, _ in ls}
    assert labels <= {"endpoint", "variant", "status", "code", "class", "feature", "bin", "le",
                      "result", "predictor", "reason"}  # both from fixed vocabularies


# -- bad input -----------------------------------------------------------------------------

# Refusals that come after a variant was chosen name it (and its version) in the answer.
AFTER_CHOOSING = {"wrong feature count", "wrong type", "null where not nullable", "NaN in CSV",
                  "unknown output"}
BAD_REQUESTS = [
    ("not JSON", "post", f"/v2/models/{ENDPOINT}/infer", {"data": b"{nope"}, 400,
     "invalid_json"),
    ("wrong feature count", "post", f"/v2/models/{ENDPOINT}/infer",
     {"json": {"instances": [[1, 2, 3, 4]]}}, 400, "wrong_feature_count"),
    ("wrong type", "post", f"/v2/models/{ENDPOINT}/infer",
     {"json": {"instances": [[1, 2, "three", 4, 5]]}}, 400, "invalid_type"),
    ("null where not nullable", "post", f"/v2/models/{ENDPOINT}/infer",
     {"json": {"instances": [[1, 2, None, 4, 5]]}}, 400, "null_value"),
    ("NaN in CSV", "post", "/invocations",
     {"data": b"1,2,nan,4,5\n", "headers": {"Content-Type": "text/csv"}}, 400, "null_value"),
    ("unknown model", "post", "/v2/models/nope/infer", {"json": {"instances": [[1] * 5]}}, 404,
     "model_not_found"),
    ("oversized body", "post", f"/v2/models/{ENDPOINT}/infer",
     {"data": b"[" + b"1," * (MAX_BODY // 2) + b"1]"}, 413, "too_large"),
    ("unsupported media type", "post", "/invocations",
     {"data": b"<rows/>", "headers": {"Content-Type": "application/xml"}}, 415,
     "unsupported_media_type"),
    ("unknown output", "post", f"/v2/models/{ENDPOINT}/infer",
     {"json": {"instances": [[1] * 5], "outputs": [{"name": "shap_values"}]}}, 400,
     "unknown_output"),
    ("wrong method", "get", f"/v2/models/{ENDPOINT}/infer", {}, 405, "method_not_allowed"),
    ("unknown route", "get", "/v3/whatever", {}, 404, "not_found"),
]


@pytest.mark.parametrize("case, method, path, kwargs, status, code", BAD_REQUESTS,
                         ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_json_error_and_are_counted(server, case, method, path, kwargs,
                                                           status, code):
    before = total(scrape(server.base), "modelgate_request_errors_total", code=code)
    answer = getattr(requests, method)(f"{server.base}{path}", timeout=10, **kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code and body["error"]
    assert answer.headers["X-Plan-Generation"] == str(server.generation)
    if case in AFTER_CHOOSING:
        assert answer.headers["X-Variant"] == body["variant"]
        assert answer.headers["X-Model-Version"] == body["model_version"]
    else:
        assert "X-Variant" not in answer.headers and "variant" not in body
    assert total(scrape(server.base), "modelgate_request_errors_total", code=code) == before + 1
    assert server.process.poll() is None
    assert infer(server.base, [[14.0, 20.0, 90.0, 600.0, 0.1]]).status_code == 200


# -- safety and reloads --------------------------------------------------------------------

def test_sha256_mismatch_is_refused_and_the_old_plan_keeps_serving(server, artifacts):
    serving = server.generation
    failures = total(scrape(server.base), "modelgate_plan_load_failures_total")
    bad = artifacts.variant("red", 0.5, sha256="0" * 64)
    since = time.time()
    server.apply([artifacts.variant("blue", 0.5), bad], wait=False)
    error = server.wait_failure("sha256_mismatch", since)
    assert "red" in error["error"]
    assert server.ready()["generation"] == serving
    metadata = requests.get(f"{server.base}/v2/models/{ENDPOINT}", timeout=5).json()
    assert metadata["parameters"]["last_error"]["code"] == "sha256_mismatch"
    assert total(scrape(server.base), "modelgate_plan_load_failures_total") == failures + 1
    answer = infer(server.base, artifacts.rows[:1])
    assert answer.status_code == 200 and answer.headers["X-Variant"] in ("blue", "green")


def test_unsafe_pickle_is_refused_unless_trusted(server, artifacts):
    serving = server.generation
    since = time.time()
    server.apply([artifacts.variant("blue", 1.0), artifacts.variant("pickled", 0.0)], wait=False)
    error = server.wait_failure("unsafe_artifact", since)
    assert "pickle" in error["error"]
    assert server.ready()["generation"] == serving
    server.apply([artifacts.variant("blue", 1.0),
                  artifacts.variant("pickled", 0.0, trusted_unsafe=True)])
    answer = infer(server.base, artifacts.rows[:1], name="pickled")
    assert answer.status_code == 200 and answer.headers["X-Variant"] == "pickled"
    assert server.ready()["last_error"] is None


def test_a_plan_that_is_not_json_keeps_the_old_plan(server, artifacts):
    serving = server.generation
    since = time.time()
    server.write_plan('{"endpoint": "cancer", "variants": [')
    server.wait_failure("invalid_plan", since)
    assert server.ready()["generation"] == serving
    assert infer(server.base, artifacts.rows[:1]).status_code == 200


def test_reload_under_concurrent_load_fails_no_request(server, artifacts):
    stop = threading.Event()
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def fire(k: int) -> None:
        with requests.Session() as session:
            i = k
            while not stop.is_set():
                try:
                    answer = infer(server.base, artifacts.rows[i % 500][None, :], session=session)
                    outcome = (answer.status_code, answer.headers.get("X-Variant", answer.text))
                except requests.RequestException as e:  # a dropped connection is a failure
                    outcome = (0, repr(e))
                with lock:
                    outcomes.append(outcome)
                i += 7

    threads = [threading.Thread(target=fire, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        server.apply([artifacts.variant("blue", 1.0)])
        time.sleep(0.3)
        server.apply([artifacts.variant("red", 1.0)])  # a model the server has not loaded yet
        time.sleep(0.3)
        server.apply([artifacts.variant("red", 0.5), artifacts.variant("green", 0.5)])
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failed = [o for o in outcomes if o[0] != 200]
    assert not failed, failed[:5]
    assert len(outcomes) > 100
    assert {"blue", "red", "green"} <= {variant for _, variant in outcomes}
    with requests.Session() as session:
        after = {infer(server.base, artifacts.rows[:1], session=session).headers["X-Variant"]
                 for _ in range(30)}
    assert after <= {"red", "green"}


def test_sighup_reloads_the_plan(servers, artifacts):
    sm = servers["sagemaker"]
    sm.generation += 1
    sm.write_plan({"endpoint": ENDPOINT, "generation": sm.generation,
                   "variants": [artifacts.variant("green", 1.0)]})
    time.sleep(0.3)
    assert sm.ready()["generation"] == sm.generation - 1  # no polling on this server
    sm.process.send_signal(signal.SIGHUP)
    sm.wait_generation(sm.generation, timeout=20)
    answer = requests.post(f"{sm.base}/invocations", json={"instances": [[14, 20, 90, 600, 0.1]]},
                           timeout=10)
    assert answer.json()["variant"] == "green"


def test_overload_answers_503_at_once_instead_of_queueing(servers, artifacts):
    sm = servers["sagemaker"]
    barrier = threading.Barrier(24)
    body = {"instances": [artifacts.rows[0].tolist()]}

    def call(_):
        barrier.wait()
        started = time.perf_counter()
        answer = requests.post(f"{sm.base}/invocations", json=body, timeout=10)
        return answer.status_code, answer.json(), time.perf_counter() - started

    duration = "modelgate_request_duration_seconds"
    before = scrape(sm.base)
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(call, range(24)))
    after = scrape(sm.base)
    refused = [r for r in results if r[0] == 503]
    served = [r for r in results if r[0] == 200]
    assert len(refused) + len(served) == 24
    assert len(refused) >= 15, [r[0] for r in results]
    assert all(r[1]["code"] == "overloaded" for r in refused)
    # Refused at once, not after the 500 ms window that the queued requests wait. The
    # server's own clock decides (body to answer): the client's is this test process's, whose
    # 24 threads can wait a second for a CPU on a loaded machine after the answer has gone.
    def observed(samples: dict, name: str, **labels) -> float:
        return total(samples, name, **labels) - total(before, name, **labels)
    assert observed(after, f"{duration}_count") == 24
    assert observed(after, f"{duration}_bucket", le="0.25") == len(refused), \
        sorted(r[2] for r in results)
    assert sorted(r[2] for r in refused)[len(refused) // 2] < 0.25  # and callers feel it
    assert served and all(r[2] >= 0.4 for r in served)
    assert observed(after, "modelgate_request_errors_total", code="overloaded") == len(refused)
    assert requests.get(f"{sm.base}/ping", timeout=5).status_code == 200
