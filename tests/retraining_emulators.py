"""Loopback emulators of the retraining targets, holding every request to the published spec.

One ``Emulator`` (an HTTP server on 127.0.0.1, a thread) answers the four APIs the
retraining targets call: Airflow 3 (``/auth/token``, ``/api/v2/dags/{dag_id}/dagRuns``),
Airflow 2 (``/api/v1/dags/{dag_id}/dagRuns``), Kubeflow Pipelines (``/apis/v2beta1/runs``),
GitHub (``/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches``) and a signed
webhook (``/hook``). Each request body is validated against the operation's request-body
schema in the vendored description (tests/fixtures/retraining/, see its README): a request
the real API would refuse is answered 422 and recorded in ``invalid``, so a target drifting
from the API fails its tests. ``fail_next(status, times)`` makes the next answers errors
(503: unreachable; 400: a refusal).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
from openapi_schema_validator import OAS30WriteValidator, OAS31Validator

FIXTURES = Path(__file__).parent / "fixtures" / "retraining"
AIRFLOW_TOKEN = "emulated-airflow-jwt"
USER, PASSWORD = "admin", "emulated-password"


@cache
def spec(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}-openapi.json").read_text())


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def request_errors(name: str, path: str, method: str, body) -> list[str]:
    """Why ``body`` is not a valid request body of ``method path`` in spec ``name``."""
    document = spec(name)
    operation = document["paths"][path][method]
    if document.get("swagger") == "2.0":
        [param] = [p for p in operation["parameters"] if p["in"] == "body"]
        index = operation["parameters"].index(param)
        schema = {**document, "$ref": _pointer("paths", path, method, "parameters", str(index),
                                               "schema")}
        validator = jsonschema.Draft4Validator(schema)
    else:
        schema = {**document, "$ref": _pointer("paths", path, method, "requestBody", "content",
                                               "application/json", "schema")}
        validator = (OAS31Validator if document["openapi"].startswith("3.1")
                     else OAS30WriteValidator)(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}"
            for e in validator.iter_errors(body)]


# (method, pattern, spec name, path in the spec, handler name)
ROUTES = [
    ("post", r"^/auth/token$", "airflow-v2", "/auth/token", "airflow_token"),
    ("post", r"^/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns$", "airflow-v2",
     "/api/v2/dags/{dag_id}/dagRuns", "airflow_run"),
    ("post", r"^/api/v1/dags/(?P<dag_id>[^/]+)/dagRuns$", "airflow-v1",
     "/dags/{dag_id}/dagRuns", "airflow_run"),
    ("post", r"^/apis/v2beta1/runs$", "kubeflow-v2beta1", "/apis/v2beta1/runs", "kfp_run"),
    ("post", r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/workflows/(?P<workflow>[^/]+)"
             r"/dispatches$", "github",
     "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", "github_dispatch"),
    ("post", r"^/hook$", None, None, "webhook"),
]


@dataclass
class Received:
    path: str
    headers: dict
    body: object
    route: str = ""


@dataclass
class Emulator:
    webhook_secret: str = ""
    received: list[Received] = field(default_factory=list)
    invalid: list[tuple[str, list[str]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    dag_runs: dict = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, status: int, times: int = 1) -> None:
        self.failures += [status] * times

    # -- handlers: (status, body) ----------------------------------------------------------------

    def airflow_token(self, request, match):
        if request.body != {"username": USER, "password": PASSWORD}:
            return 401, {"detail": "Invalid credentials"}
        return 201, {"access_token": AIRFLOW_TOKEN}

    def airflow_run(self, request, match):
        auth = request.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if auth not in (f"Bearer {AIRFLOW_TOKEN}", basic):
            return 401, {"detail": "Not authenticated"}
        key = (match["dag_id"], request.body.get("dag_run_id"))
        if key in self.dag_runs:
            return 409, {"detail": f"DAG run {key[1]} already exists"}
        self.dag_runs[key] = request.body.get("conf")
        return 200, {"dag_run_id": key[1], "dag_id": key[0], "conf": request.body.get("conf"),
                     "state": "queued", "run_type": "manual"}

    def kfp_run(self, request, match):
        run_id = str(uuid.uuid4())
        return 200, {**request.body, "run_id": run_id, "state": "PENDING"}

    def github_dispatch(self, request, match):
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return 401, {"message": "Requires authentication"}
        run = 4242 + len(self.received)
        repo = f"{match['owner']}/{match['repo']}"
        return 200, {"workflow_run_id": run,
                     "run_url": f"https://api.github.com/repos/{repo}/actions/runs/{run}",
                     "html_url": f"https://github.com/{repo}/actions/runs/{run}"}

    def webhook(self, request, match):
        if self.webhook_secret:
            expected = "sha256=" + hmac.new(self.webhook_secret.encode(), request.raw,
                                            hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected,
                                       request.headers.get("X-Modelgate-Signature", "")):
                return 401, {"detail": "bad signature"}
        return 200, {"run_id": f"hook-{request.body['data']['trigger_id']}",
                     "url": "https://ci.example.com/runs/1"}

    # -- dispatch ---------------------------------------------------------------------------------

    def answer(self, path: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return 400, {"detail": "not JSON"}
        request = Received(path, headers, body)
        request.raw = raw
        for method, pattern, name, spec_path, handler in ROUTES:
            match = re.match(pattern, path.split("?")[0])
            if not match:
                continue
            request.route = handler
            self.received.append(request)
            if self.failures:
                return self.failures.pop(0), {"detail": "emulated failure"}
            errors = request_errors(name, spec_path, method, body) if name else []
            if errors:
                self.invalid.append((path, errors))
                return 422, {"detail": errors}
            return getattr(self, handler)(request, match)
        return 404, {"detail": "no such route"}


def start(emulator: Emulator) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = emulator.answer(self.path, dict(self.headers), raw)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False  # closing never waits on a client's idle connection

    server = Server(("127.0.0.1", emulator.port), Handler)
    emulator.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def target_settings(emulator: Emulator) -> dict:
    """``MODELGATE_RETRAINING_TARGETS`` pointing every kind at ``emulator``."""
    return {
        "airflow": {"kind": "airflow", "url": emulator.url, "username": USER,
                    "password": PASSWORD},
        "airflow2": {"kind": "airflow", "url": emulator.url, "api": "v1", "username": USER,
                     "password": PASSWORD},
        "kfp": {"kind": "kubeflow", "url": emulator.url, "token": "kfp-token"},
        "gh": {"kind": "github", "repository": "acme/models", "token": "gh-token",
               "api_url": emulator.url, "allowed": {"workflow": ["retrain.yml"]}},
    }
