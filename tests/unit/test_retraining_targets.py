"""The retraining targets against loopback emulators of the real APIs (ops/retraining/).

Every request is validated against the API's published description (vendored in
tests/fixtures/retraining/), so these pass only when the targets send what Airflow 3 and 2,
Kubeflow Pipelines, GitHub and a signed webhook accept. One contract, parametrized over the
kinds: a run starts and says where it is; an unreachable target is transient; a refusal is
permanent; credentials never show in an error.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ops import retraining
from ops.retraining import RunRequest, TargetRefused, TargetUnreachable
from tests.rebinding import rebind_to_loopback
from tests.retraining_emulators import Emulator, request_errors, start, target_settings

EVIDENCE = {"rule": {"id": 1, "name": "drift"}, "model": "tumor-classifier",
            "alert": {"id": 7, "name": "ModelgateFeatureDriftCritical"},
            "features": [{"name": "mean radius", "psi": 0.93, "ks": 0.41}],
            "window": {"from": "2026-12-05T15:00:00+00:00", "to": "2026-12-05T15:40:00+00:00"},
            "serving_version": {"id": 3, "number": 3}}
PARAMS = {"airflow": {"dag_id": "retrain_tumor"}, "airflow2": {"dag_id": "retrain_tumor"},
          "kfp": {"pipeline_id": "p-1", "pipeline_version_id": "pv-2"},
          "gh": {"workflow": "retrain.yml", "ref": "main"}, "webhook": {"url": ""}}
SECRET = "webhook-secret"


def sign(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def emulator():
    found = Emulator(webhook_secret=SECRET)
    server = start(found)
    yield found
    server.shutdown()
    server.server_close()


def target_of(name: str, emulator: Emulator):
    if name == "webhook":
        return retraining.target_class("webhook")({"secret": SECRET, "sign": sign,
                                                   "refuse": lambda url: None})
    settings = target_settings(emulator)[name]
    return retraining.target_class(settings["kind"])(settings)


def request_for(name: str, emulator: Emulator, trigger_id: int = 12) -> RunRequest:
    params = dict(PARAMS[name])
    if name == "webhook":
        params["url"] = f"{emulator.url}/hook"
    return RunRequest(trigger_id, f"modelgate-trigger-{trigger_id}", EVIDENCE, params)


KINDS = ["airflow", "airflow2", "kfp", "gh", "webhook"]


@pytest.mark.parametrize("name", KINDS)
def test_a_run_starts_with_the_evidence_in_a_request_the_real_api_accepts(name, emulator):
    before = len(emulator.received)
    started = target_of(name, emulator).start(request_for(name, emulator, trigger_id=100))
    assert emulator.invalid == []
    sent = emulator.received[-1].body
    assert len(emulator.received) > before and started.run_id
    if name.startswith("airflow"):
        assert sent["conf"] == {"trigger_id": 100, "evidence": EVIDENCE}
        assert started.run_id == "modelgate-trigger-100" and "retrain_tumor" in started.url
    elif name == "kfp":
        params = sent["runtime_config"]["parameters"]
        assert params["trigger_id"] == 100 and '"mean radius"' in params["evidence"]
        assert sent["pipeline_version_reference"] == {"pipeline_id": "p-1",
                                                      "pipeline_version_id": "pv-2"}
        assert started.url.endswith(f"/#/runs/details/{started.run_id}")
    elif name == "gh":
        assert sent["ref"] == "main" and sent["inputs"]["trigger_id"] == "100"
        assert started.url.startswith("https://github.com/acme/models/actions/runs/")
    else:
        assert sent["data"] == {"trigger_id": 100, "evidence": EVIDENCE}
        assert started.run_id == "hook-100"


@pytest.mark.parametrize("name", KINDS)
def test_an_unreachable_target_is_transient_and_a_refusal_permanent(name, emulator):
    target = target_of(name, emulator)
    emulator.fail_next(503, times=2)  # Airflow 3 asks for a token first: both fail
    with pytest.raises(TargetUnreachable):
        target.start(request_for(name, emulator, trigger_id=200))
    emulator.failures.clear()
    emulator.fail_next(400, times=2)
    with pytest.raises(TargetRefused) as refused:
        target.start(request_for(name, emulator, trigger_id=201))
    emulator.failures.clear()
    secrets = ("emulated-password", "kfp-token", "gh-token", SECRET)
    assert not any(secret in refused.value.detail for secret in secrets)


def test_nothing_listening_is_unreachable():
    target = retraining.target_class("kubeflow")({"kind": "kubeflow",
                                                 "url": "http://127.0.0.1:9"})
    with pytest.raises(TargetUnreachable, match="could not connect"):
        target.start(RunRequest(1, "modelgate-trigger-1", {}, PARAMS["kfp"]))


def test_an_airflow_run_repeated_after_a_lost_answer_counts_as_started(emulator):
    target = target_of("airflow", emulator)
    first = target.start(request_for("airflow", emulator, trigger_id=300))
    again = target.start(request_for("airflow", emulator, trigger_id=300))
    assert (first.already, again.already) == (False, True)
    assert again.run_id == first.run_id


def test_a_webhook_body_is_signed_with_the_secret(emulator):
    target = retraining.target_class("webhook")({"secret": "another", "sign": sign,
                                                 "refuse": lambda url: None})
    with pytest.raises(TargetRefused, match="401"):  # the emulator checks the signature
        target.start(request_for("webhook", emulator))


def test_a_webhook_to_a_refused_address_is_not_sent(emulator):
    before = len(emulator.received)
    target = retraining.target_class("webhook")({"secret": SECRET, "sign": sign,
                                                 "refuse": lambda url: "a private address"})
    with pytest.raises(TargetRefused, match="private address"):
        target.start(request_for("webhook", emulator))
    assert len(emulator.received) == before


def test_the_emulators_refuse_what_the_published_specs_refuse():
    """The validation can fail: bodies the real APIs reject are caught."""
    assert request_errors("airflow-v2", "/api/v2/dags/{dag_id}/dagRuns", "post",
                          {"conf": {}})  # logical_date is required in Airflow 3
    assert request_errors("airflow-v2", "/api/v2/dags/{dag_id}/dagRuns", "post",
                          {"logical_date": None, "execution_date": None})  # no such field
    assert request_errors("airflow-v1", "/dags/{dag_id}/dagRuns", "post",
                          {"dag_id": "x", "conf": {}})  # dag_id is read-only
    assert request_errors("kubeflow-v2beta1", "/apis/v2beta1/runs", "post",
                          {"display_name": 5})
    path = "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
    assert request_errors("github", path, "post", {"inputs": {}})  # ref is required
    assert request_errors("github", path, "post",
                          {"ref": "main", "inputs": {str(i): "x" for i in range(26)}})


@pytest.mark.parametrize("kind, settings, problem", [
    ("airflow", {"url": "ftp://x", "token": "t"}, "url"),
    ("airflow", {"url": "http://x", "api": "v3", "token": "t"}, "api"),
    ("airflow", {"url": "http://x"}, "token, or username and password"),
    ("github", {"repository": "no-slash", "token": "t"}, "owner/name"),
    ("kubeflow", {"url": "http://x", "hosts": []}, "unknown settings hosts"),
])
def test_bad_target_settings_are_refused_naming_the_problem(kind, settings, problem):
    with pytest.raises(TargetRefused, match=problem):
        retraining.target_class(kind)(settings)


def test_parameters_are_checked_against_the_kind_and_the_operators_list():
    github = retraining.target_class("github")
    assert github.check_params({"workflow": " retrain.yml ", "ref": "main"},
                               {"workflow": ["retrain.yml"]}) == {"workflow": "retrain.yml",
                                                                  "ref": "main"}
    with pytest.raises(TargetRefused, match="must be one of retrain.yml"):
        github.check_params({"workflow": "deploy.yml", "ref": "main"},
                            {"workflow": ["retrain.yml"]})
    with pytest.raises(TargetRefused, match="unknown parameters .* dag_id"):
        github.check_params({"workflow": "a", "ref": "b", "dag_id": "c"})
    with pytest.raises(TargetRefused, match="ref is required"):
        github.check_params({"workflow": "a"})
    with pytest.raises(TargetRefused, match="unknown retraining target kind 'jenkins'; "
                                            "known: airflow, kubeflow, github, webhook"):
        retraining.target_class("jenkins")


def _loopback_server(answer):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer(self)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_webhook_name_rebound_to_loopback_after_the_check_is_not_posted_to(monkeypatch):

    from ops.addresses import url_non_public

    hits = []

    def answer(handler):
        hits.append(handler.path)
        handler.send_response(200)
        handler.end_headers()

    server = _loopback_server(answer)
    port = server.server_address[1]
    rebind_to_loopback(monkeypatch, port)  # public once, then loopback
    target = retraining.target_class("webhook")({"secret": SECRET, "sign": sign,
                                                 "refuse": url_non_public,
                                                 "public_only": True})
    try:
        with pytest.raises(TargetRefused) as refused:
            target.start(RunRequest(1, "modelgate-trigger-1", EVIDENCE,
                                    {"url": f"http://rebind.attacker.example:{port}/hook"}))
    finally:
        server.shutdown()
        server.server_close()
    assert not hits
    assert refused.value.code == "private_address"
    assert "127.0.0.1 is not a public address" in refused.value.detail


def test_a_huge_answer_is_refused_before_it_is_all_read():
    sent = []

    def answer(handler):
        handler.send_response(200 if handler.path == "/ok" else 400)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        try:
            for _ in range(32):
                handler.wfile.write(b" " * (1 << 20))
                sent.append(1 << 20)
            handler.wfile.write(b'{"run_id": "r", "detail": "no"}')
        except OSError:
            pass

    server = _loopback_server(answer)
    target = retraining.target_class("webhook")({"secret": SECRET, "sign": sign,
                                                 "refuse": lambda url: None})
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(TargetRefused) as refused:
            target.start(RunRequest(1, "modelgate-trigger-1", EVIDENCE, {"url": url + "/ok"}))
        with pytest.raises(TargetRefused) as error:
            target.start(RunRequest(2, "modelgate-trigger-2", EVIDENCE, {"url": url + "/no"}))
    finally:
        server.shutdown()
        server.server_close()
    assert refused.value.code == "answer_too_large"
    assert error.value.detail == "webhook: HTTP 400"  # its text is not read for a message
    assert sum(sent) < 24 << 20, f"{sum(sent) >> 20} MiB sent"
