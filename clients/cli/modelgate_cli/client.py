"""The SDK: ``Client(url, token)``, thin methods over Modelgate's REST API.

Each method is one request (or a lookup by name, which is a filtered list) and returns the
API's JSON document as a dict. Errors the server answers are ``ApiError`` with its stable
``code``; a server that cannot be reached (refused, timed out, or a proxy's 502/503/504
while the portal restarts) is ``Unreachable``. Reads (GET) are retried with backoff for up
to ``retry_for`` seconds, so a restart of the portal does not fail a pipeline; changes
(POST) are never retried, since the first may have been applied.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

USER_AGENT = "modelgate-cli/0.1.0"
# A proxy's answers while the portal behind it restarts; the portal itself answers 503
# while it cannot reach its database.
TRANSIENT_STATUSES = {502, 503, 504}
MAX_BACKOFF = 8.0


class ClientError(Exception):
    """Base of what the client raises."""


class ApiError(ClientError):
    """The server refused the request: ``status``, its ``code`` and ``detail``, the
    ``field`` at fault when one is."""

    def __init__(self, status: int, code: str, detail: str, field: str | None = None,
                 body: Any = None):
        self.status, self.code, self.detail, self.field, self.body = (
            status, code, detail, field, body)
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {code}{where}: {detail}")


class Unreachable(ClientError):
    """The server could not be reached, or a proxy said it is away (transient)."""


def _error_of(response: requests.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        return ApiError(response.status_code, str(body.get("code") or "error"),
                        str(body.get("detail") or body), body.get("field"), body)
    return ApiError(response.status_code, "error", str(body)[:500] or response.reason, None,
                    body)


class Client:
    """Modelgate's REST API at ``url`` (the portal's address), as ``token``'s holder."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 retry_for: float = 30.0,
                 on_retry: Callable[[Exception, float], None] | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry_for = retry_for
        self.on_retry = on_retry
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def close(self) -> None:
        """Close the kept-alive connections."""
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Transport -------------------------------------------------------------------------

    def _send(self, method: str, path: str, timeout: float | None = None, **kwargs) -> Any:
        url = path if path.startswith("http") else f"{self.url}/api/v1/{path.lstrip('/')}"
        try:
            response = self.session.request(method, url, timeout=timeout or self.timeout,
                                            **kwargs)
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:
            raise Unreachable(f"{self.url} could not be reached: {e}") from e
        if response.status_code in TRANSIENT_STATUSES:
            raise Unreachable(f"{self.url} answered {response.status_code} "
                              f"{response.reason} (restarting?)")
        if response.status_code >= 400:
            raise _error_of(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params) -> Any:
        """GET, retried with exponential backoff while the server is unreachable, for at
        most ``retry_for`` seconds."""
        params = {k: v for k, v in params.items() if v is not None}
        give_up = time.monotonic() + self.retry_for
        delay = 0.5
        while True:
            try:
                return self._send("GET", path, params=params)
            except Unreachable as e:
                left = give_up - time.monotonic()
                if left <= 0:
                    raise
                pause = min(delay * random.uniform(0.8, 1.2), left)
                if self.on_retry:
                    self.on_retry(e, pause)
                time.sleep(pause)
                delay = min(delay * 2, MAX_BACKOFF)

    def post(self, path: str, body: Any = None, **kwargs) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self._send("POST", path, **kwargs)

    def pages(self, path: str, **params) -> Iterator[dict]:
        """Every item of a paginated list (page number or cursor pagination)."""
        page = self.get(path, **params)
        while True:
            if isinstance(page, list):  # an unpaginated list
                yield from page
                return
            yield from page.get("results", [])
            if not page.get("next"):
                return
            page = self.get(page["next"])

    def first(self, path: str, **params) -> dict | None:
        return next(iter(self.pages(path, **params)), None)

    # Accounts ----------------------------------------------------------------------------

    @classmethod
    def login(cls, url: str, username: str, password: str, name: str = "modelgate-cli",
              **kwargs) -> dict:
        """A new token for a username and password: ``{"token", "name", "prefix"}``. It
        holds the read and write scopes (``approve`` needs a token made signed in)."""
        return cls(url, **kwargs).post("auth/token/", {"username": username,
                                                       "password": password, "name": name})

    def about(self) -> dict:
        """What the server runs: the portal, Python, scikit-learn, skops, numpy..."""
        return self.get("about/")

    # Registry ----------------------------------------------------------------------------

    def project(self, slug: str) -> dict | None:
        return self.first("projects/", slug=slug)

    def model(self, project: str, name: str) -> dict | None:
        return self.first("models/", project_slug=project, name=name)

    def create_model(self, project_id: int, name: str, task: str, description: str = "") -> dict:
        return self.post("models/", {"project": project_id, "name": name, "task": task,
                                     "description": description})

    def register_version(self, model_id: int, artifact: str | Path, metadata: dict) -> dict:
        """Upload an artifact with its metadata (``input_schema`` at least)."""
        path = Path(artifact)
        with path.open("rb") as f:
            return self.post(f"models/{model_id}/versions/",
                             files={"artifact": (path.name, f, "application/octet-stream")},
                             data={"metadata": json.dumps(metadata)},
                             timeout=max(self.timeout, 600.0))

    def version(self, version_id: int) -> dict:
        return self.get(f"versions/{version_id}/")

    def import_mlflow(self, model_id: int, source: dict) -> dict:
        """Ask the portal to import an MLflow model version (``name`` and ``version``, or
        ``run_id`` and ``artifact_path``; ``tracking_uri`` optional): the import, pending
        (or the one made already for that MLflow version)."""
        return self.post(f"models/{model_id}/versions/import-mlflow/", source)

    def mlflow_import(self, import_id: int) -> dict:
        return self.get(f"mlflow-imports/{import_id}/")

    def find_version(self, model_id: int, ref: str) -> dict | None:
        """A model's version by number (``3``), label (``1.2.0``) or ``latest`` (the newest
        ready one)."""
        if ref == "latest":
            return self.first("versions/", model=model_id, status="ready")
        if ref.isdigit():
            return next((v for v in self.pages("versions/", model=model_id)
                         if v["number"] == int(ref)), None)
        return self.first("versions/", model=model_id, label=ref)

    # Releases ----------------------------------------------------------------------------

    def environment(self, project: str, name: str) -> dict | None:
        return self.first("environments/", project_slug=project, name=name)

    def request_release(self, version_id: int, environment_id: int, strategy: str,
                        strategy_params: dict | None = None, reason: str = "",
                        breaking_change: bool = False) -> dict:
        return self.post("approval-requests/", {
            "version": version_id, "environment": environment_id, "strategy": strategy,
            "strategy_params": strategy_params or {}, "reason": reason,
            "breaking_change": breaking_change})

    def approval_request(self, request_id: int) -> dict:
        return self.get(f"approval-requests/{request_id}/")

    def latest_request(self, model_id: int, environment_id: int) -> dict | None:
        return self.first("approval-requests/", model=model_id, environment=environment_id,
                          ordering="-created_at")

    def review(self, request_id: int, decision: str, comment: str,
               acknowledge_breaking_change: bool = False) -> dict:
        """Approve or reject (``decision``) a release request: the approve scope."""
        return self.post(f"approval-requests/{request_id}/{decision}/", {
            "comment": comment, "acknowledge_breaking_change": acknowledge_breaking_change})

    def deployment(self, deployment_id: int) -> dict:
        return self.get(f"deployments/{deployment_id}/")

    def deployment_of(self, request: dict) -> dict | None:
        """The rollout an approved request started (None before it starts)."""
        for item in self.pages("deployments/", environment=request["environment"],
                               ordering="-created_at", page_size=100):
            if item.get("request") == request["id"]:
                return item
        return None

    def latest_deployment(self, model_id: int, environment_id: int) -> dict | None:
        return self.first("deployments/", model=model_id, environment=environment_id,
                          ordering="-created_at")

    def command(self, deployment_id: int, name: str) -> dict:
        """A person's command to a rollout: pause, rollback (write scope); resume, promote,
        keep (approve scope)."""
        return self.post(f"deployments/{deployment_id}/{name}/")

    # Experiments -------------------------------------------------------------------------

    def feedback(self, items: list[dict]) -> dict:
        """Outcomes of predictions (``{"prediction_id", "outcome"}``), one batch:
        ``{"accepted", "duplicates", "rejected", "errors"}``."""
        return self.post("feedback/", {"items": items})
