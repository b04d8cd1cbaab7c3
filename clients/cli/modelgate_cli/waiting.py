"""``modelgate wait``: follow a release until its rollout ends, and say how as an exit code.

The wait polls every ``interval`` seconds, counted from the start of one poll to the start
of the next, so it notices the end of a rollout at most one interval (plus one request)
after it happens. Progress goes to stderr: each change of status and each new entry of the
deployment's log. A server that cannot be reached (a restart) is retried with backoff for
at most ``retry_for`` seconds at a time before the wait gives up with its own exit code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modelgate_cli.client import Client, Unreachable

# Exit codes of every command; `wait` (and `release --wait`) use all of them.
OK = 0
ERROR = 1  # the server refused a request, bad input, a version that failed its checks
USAGE = 2  # wrong arguments, or a token on the command line
ROLLED_BACK = 3  # rolled back (automatically or by a person), or the stable kept
FAILED = 4  # the rollout failed (the backend could not apply it, an interface changed...)
PAUSED = 5  # paused, or awaiting an approver's decision (an A/B test's end): a person acts
TIMEOUT = 6  # --timeout passed before the rollout ended
NOT_APPROVED = 7  # the release request was rejected, cancelled or expired
UNREACHABLE = 8  # the server stayed unreachable for --retry-for seconds

EXIT_CODES = f"""exit codes:
  {OK}  success (wait: the rollout succeeded)
  {ERROR}  error: the server refused a request (the message names its code), bad input
  {USAGE}  usage: wrong arguments, or a token given on the command line
  {ROLLED_BACK}  rolled back: the candidate was rolled back, or the stable kept
  {FAILED}  failed: the rollout failed
  {PAUSED}  paused for a person: the rollout is paused, or awaits an approver's decision
  {TIMEOUT}  timeout: --timeout passed before the rollout ended
  {NOT_APPROVED}  not approved: the release request was rejected, cancelled or expired
  {UNREACHABLE}  unreachable: the server did not answer for --retry-for seconds"""

DEPLOYMENT_ENDS = {"succeeded": OK, "rolled_back": ROLLED_BACK, "kept_stable": ROLLED_BACK,
                   "failed": FAILED}
NEEDS_A_PERSON = {"paused": PAUSED, "awaiting_decision": PAUSED}
REQUEST_ENDS = {"rejected": NOT_APPROVED, "cancelled": NOT_APPROVED, "expired": NOT_APPROVED}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Result:
    code: int
    outcome: str
    request: dict | None = None
    deployment: dict | None = None
    waited_seconds: float = 0.0

    def document(self) -> dict:
        d = self.deployment or {}
        r = self.request or {}
        return {"outcome": self.outcome, "exit_code": self.code,
                "request": r.get("id") or d.get("request"), "deployment": d.get("id"),
                "status": d.get("status") or r.get("status"),
                "model": d.get("model_name") or r.get("model_name"),
                "version": d.get("candidate_version") or r.get("version_number"),
                "environment": d.get("environment_name") or r.get("environment_name"),
                "waited_seconds": round(self.waited_seconds, 3)}


@dataclass
class Waiter:
    """Follows a release request (``request_id``) or a rollout (``deployment_id``)."""

    client: Client
    request_id: int | None = None
    deployment_id: int | None = None
    interval: float = 5.0
    timeout: float = 3600.0
    retry_for: float = 300.0
    through_pauses: bool = False
    report: Callable[[str], None] = progress
    _last: dict = field(default_factory=dict)
    _events_seen: int = 0

    def run(self) -> Result:
        started = time.monotonic()
        deadline = started + self.timeout
        self.client.on_retry = self._retrying
        request = deployment = None
        while True:
            polled_at = time.monotonic()
            # A restart of the server is retried within the wait's own time, and at most
            # retry_for seconds at a time.
            self.client.retry_for = max(0.0, min(self.retry_for, deadline - polled_at))
            try:
                request, deployment = self._poll()
            except Unreachable as e:
                self.report(f"giving up: {e}")
                return Result(UNREACHABLE, "unreachable", request, deployment,
                              time.monotonic() - started)
            code, outcome = self._judge(request, deployment)
            if code is not None:
                return Result(code, outcome, request, deployment, time.monotonic() - started)
            if polled_at >= deadline:
                self.report(f"timed out after {self.timeout:g} s")
                return Result(TIMEOUT, "timeout", request, deployment,
                              time.monotonic() - started)
            time.sleep(max(0.0, min(polled_at + self.interval, deadline) - time.monotonic()))

    def _poll(self) -> tuple[dict | None, dict | None]:
        request = None
        if self.deployment_id is None:
            request = self.client.approval_request(self.request_id)
            self._say("request", request["status"],
                      f"release request {request['id']} ({request['model_name']} "
                      f"v{request['version_number']} to {request['environment_name']}, "
                      f"{request['strategy']}): {request['status']}")
            if request["status"] != "approved":
                return request, None
            found = self.client.deployment_of(request)
            if found is None:
                return request, None  # approved; the rollout is being created
            self.deployment_id = found["id"]
        deployment = self.client.deployment(self.deployment_id)
        self._say("deployment", (deployment["status"], deployment.get("step")),
                  f"deployment {deployment['id']} ({deployment['model_name']} "
                  f"v{deployment['candidate_version']} on {deployment['environment_name']}, "
                  f"{deployment['strategy']}): {deployment['status']}, "
                  f"step {deployment.get('step', 0)}")
        self._log_events(deployment)
        return request, deployment

    def _judge(self, request, deployment) -> tuple[int | None, str]:
        if deployment is not None:
            status = deployment["status"]
            if status in DEPLOYMENT_ENDS:
                return DEPLOYMENT_ENDS[status], status
            if status in NEEDS_A_PERSON and not self.through_pauses:
                return NEEDS_A_PERSON[status], status
            return None, status
        if request is not None and request["status"] in REQUEST_ENDS:
            return REQUEST_ENDS[request["status"]], request["status"]
        return None, ""

    def _say(self, what: str, state, message: str) -> None:
        if self._last.get(what) != state:
            self._last[what] = state
            self.report(message)

    def _log_events(self, deployment: dict) -> None:
        events = deployment.get("events") or []
        for event in events[self._events_seen:]:
            reason = f": {event['reason']}" if event.get("reason") else ""
            weights = f" {event['weights']}" if event.get("weights") else ""
            self.report(f"  {event['event']} ({event['status']}){weights}{reason}")
        self._events_seen = max(self._events_seen, len(events))

    def _retrying(self, error: Exception, pause: float) -> None:
        self.report(f"{error}; retrying in {pause:.1f} s")
