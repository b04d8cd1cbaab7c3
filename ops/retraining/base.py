"""The contract of a retraining target, its request and answer, and its errors."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import requests

from ops.addresses import refused_peer
from ops.exceptions import DetailedError, PermanentError, TransientError

TIMEOUT_SECONDS = 10
# The most of an answer read: a target's JSON (a run id and a link) and an error's text.
MAX_ANSWER_BYTES = 1 << 20
MAX_ERROR_BYTES = 64 << 10
USER_AGENT = "Modelgate-Retraining/1"


class TargetError(DetailedError):
    """A run could not be started; ``detail`` says why for people (no secrets in it)."""

    code = "target_error"


class TargetUnreachable(TargetError, TransientError):
    """No connection, a timeout, 429 or 5xx: trying again later may work."""

    code = "target_unreachable"


class TargetRefused(TargetError, PermanentError):
    """The target said no (4xx) or the settings are wrong: retrying cannot help."""

    code = "target_refused"


@dataclass(frozen=True)
class Parameter:
    """A setting a rule gives for its target (the operator's target gives the rest)."""

    name: str
    help: str
    required: bool = True


@dataclass(frozen=True)
class RunRequest:
    """One retraining run to start.

    ``trigger_id`` is the portal's trigger (the registered version names it back with
    ``--triggered-by``); ``run_name`` is unique per trigger, so a target that takes an id
    (Airflow's ``dag_run_id``) makes a repeated request after a lost answer harmless.
    ``evidence`` is JSON: the rule, the alert, the drifted features with their statistics,
    the window and the serving version.
    """

    trigger_id: int
    run_name: str
    evidence: dict
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunStarted:
    run_id: str  # the target's id of the run ("" when it returns none)
    url: str = ""  # where people see the run, when the target says or implies it
    already: bool = False  # the run existed: an earlier attempt's answer was lost


class Target(ABC):
    """An orchestrator that starts training runs.

    ``settings`` are the operator's (address, credentials, what rules may choose);
    ``PARAMETERS`` what a rule gives. Constructors check both shapes and raise
    ``TargetRefused`` naming the first problem.
    """

    kind: str = ""
    PARAMETERS: tuple[Parameter, ...] = ()
    SETTINGS: tuple[str, ...] = ()  # keys the operator may set (besides "kind", "allowed")

    def __init__(self, settings: dict, session: requests.Session | None = None):
        unknown = sorted(set(settings) - set(self.SETTINGS) - {"kind", "allowed"})
        if unknown:
            raise TargetRefused(f"{self.kind} target: unknown settings {', '.join(unknown)} "
                                f"(known: {', '.join(self.SETTINGS)})", code="bad_target")
        self.settings = settings
        self.session = session or requests.Session()

    @classmethod
    def check_params(cls, params: dict, allowed: dict | None = None) -> dict:
        """The rule's parameters, checked: known names, required ones present, strings,
        and within the operator's ``allowed`` lists; ``TargetRefused`` names the first
        problem (``field`` = the parameter)."""
        if not isinstance(params, dict):
            raise TargetRefused("parameters must be a JSON object", code="bad_params")
        known = {p.name for p in cls.PARAMETERS}
        unknown = sorted(set(params) - known)
        if unknown:
            raise TargetRefused(f"unknown parameters for a {cls.kind} target: "
                                f"{', '.join(unknown)} (known: {', '.join(sorted(known))})",
                                code="bad_params")
        clean = {}
        for p in cls.PARAMETERS:
            value = params.get(p.name, "")
            if not isinstance(value, str) or len(value) > 500:
                raise TargetRefused(f"{p.name} must be text of at most 500 characters",
                                    code="bad_params")
            value = value.strip()
            if p.required and not value:
                raise TargetRefused(f"{p.name} is required: {p.help}", code="bad_params")
            choices = (allowed or {}).get(p.name)
            if value and choices is not None and value not in choices:
                raise TargetRefused(f"{p.name} must be one of {', '.join(map(str, choices))} "
                                    "(the operator's list for this target)", code="bad_params")
            if value:
                clean[p.name] = value
        return clean

    @abstractmethod
    def start(self, request: RunRequest) -> RunStarted:
        """Start the run; ``TargetUnreachable`` or ``TargetRefused`` when it cannot."""

    # -- the one HTTP call every target makes ----------------------------------------------------

    def post(self, url: str, body: dict | bytes, *, headers: dict | None = None,
             auth=None, where: str = "") -> requests.Response:
        """POST JSON; a 2xx or 409 answer is returned, anything else raised as a target error.

        Errors never repeat the URL's query or a credential: ``where`` names the target.
        """
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                **(headers or {})}
        where = where or self.kind
        try:
            # stream=True: the body is read by json_of and _said, capped, never whole.
            response = self.session.post(url, data=data, headers=sent, auth=auth,
                                         timeout=TIMEOUT_SECONDS, allow_redirects=False,
                                         stream=True)
        except requests.Timeout as e:
            raise TargetUnreachable(f"{where}: no answer within {TIMEOUT_SECONDS} s") from e
        except requests.ConnectionError as e:
            refused = refused_peer(e)
            if refused:
                raise TargetRefused(f"{where}: refused: {refused}",
                                    code="private_address") from e
            raise TargetUnreachable(f"{where}: could not connect") from e
        except requests.RequestException as e:
            raise TargetRefused(f"{where}: the request could not be sent "
                                f"({type(e).__name__})") from e
        code = response.status_code
        if 200 <= code < 300 or code == 409:
            return response
        said = _said(response)
        response.close()
        if code == 429 or code >= 500:
            raise TargetUnreachable(f"{where}: HTTP {code}{said}")
        if code in (401, 403):
            raise TargetRefused(f"{where}: HTTP {code}{said} (check the target's credentials)",
                                code="target_unauthorized")
        raise TargetRefused(f"{where}: HTTP {code}{said}")


def _capped(response: requests.Response, cap: int) -> bytes | None:
    """At most ``cap`` bytes of an answer's (decoded) body; None when it has more or cannot
    be read. Reads a streamed answer's ``raw``; an answer already read (or built in a test)
    gives its ``content``."""
    try:
        if response._content_consumed or response.raw is None:  # noqa: SLF001 - requests'
            body = response.content or b""
        else:
            body = response.raw.read(cap + 1, decode_content=True)
            response.close()
    except Exception:  # noqa: BLE001 - urllib3's read errors: nothing to read then
        return None
    return None if len(body) > cap else body


def _said(response: requests.Response) -> str:
    """The start of what an error answer says (its ``detail`` or ``message``), for people."""
    raw = _capped(response, MAX_ERROR_BYTES)
    try:
        body = json.loads(raw) if raw is not None else None
    except ValueError:
        return ""
    if isinstance(body, dict):
        text = body.get("detail") or body.get("message") or body.get("error") or ""
        if not isinstance(text, str):
            text = json.dumps(text)[:200]
        return f": {text[:200]}" if text else ""
    return ""


def json_of(response: requests.Response) -> dict:
    """A target's JSON answer (an object), read to at most ``MAX_ANSWER_BYTES``;
    ``TargetRefused`` when the answer is larger, ``{}`` when it is not a JSON object."""
    raw = _capped(response, MAX_ANSWER_BYTES)
    if raw is None:
        raise TargetRefused(f"the target's answer is larger than {MAX_ANSWER_BYTES >> 10} KiB "
                            "(or could not be read); the portal reads no more",
                            code="answer_too_large")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
