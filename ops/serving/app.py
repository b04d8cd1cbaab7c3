"""The model server's HTTP face: a raw ASGI application (no framework on the hot path).

Routes: Open Inference Protocol v2 (``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{name}``, ``/v2/models/{name}/ready``, ``/v2/models/{name}[/versions/{v}]/infer``),
SageMaker (``/ping``, ``/invocations``) and ``/metrics``. ``{name}`` is the endpoint (routed by
the plan's weights) or one variant's name (that variant only).

Every error is ``{"error": detail, "code": code}`` and is counted: 4xx for what the client sent,
503 for "overloaded" and "not_ready", 500 ``predict_failed`` when the model raises on rows its
schema accepts and 500 ``nonfinite_prediction`` when it answers NaN or infinity for them (the
version's fault, so canary analysis sees it), and 500 ``internal`` for an unexpected exception,
which is logged and never stops the server. Every inference answer, errors included, says which
plan generation, variant and version answered (``ops.serving.answers``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import orjson

from ops.artifacts import CLASSIFICATION
from ops.serving.answers import (
    JSON,
    NUMPY_JSON,
    Attribution,
    error_body,
    infer_answer,
    invocation_answer,
)
from ops.serving.exceptions import (
    BadInput,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    RequestError,
)
from ops.serving.ids import INSTANCE_ENV, Signer, new_prediction_ids
from ops.serving.inputs import (
    ParsedRequest,
    decode_json,
    invocation_media,
    parse_infer,
    parse_invocation_document,
    rows_from_csv,
    unit_id_of,
)
from ops.serving.metrics import NO_VARIANT, ServerMetrics, status_class
from ops.serving.plans import PlanManager, ServingState
from ops.serving.variants import LoadedVariant, Prediction

log = logging.getLogger("ops.serving")

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_SHADOW_TOLERANCE = 1e-2  # relative: regressors "agree" within 1 %
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"

Send = Callable[[dict], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before its body arrived; nobody is left to answer."""


@dataclass(slots=True)
class Incoming:
    """An inference request as read, before a variant parses its rows."""

    headers: dict
    body: bytes
    document: object  # the decoded JSON (None for CSV)
    csv: bool
    sagemaker: bool


class ModelServer:
    """ASGI application serving the plan held by ``manager``."""

    def __init__(self, manager: PlanManager, metrics: ServerMetrics, *,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 shadow_tolerance: float = DEFAULT_SHADOW_TOLERANCE,
                 signer: Signer | None = None, instance: str | None = None):
        self.manager = manager
        # Who started this server (the local backend's mark): lets it tell its own server
        # from another process answering on the same port.
        self.instance = instance if instance is not None else os.environ.get(INSTANCE_ENV, "")
        self.signer = signer  # signs prediction ids; None: unsigned (refused as feedback)
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.shadow_tolerance = shadow_tolerance
        self._background: set[asyncio.Task] = set()
        # Attribution headers of a successful answer, by (generation, variant, version).
        self._answer_headers: dict[tuple, list[tuple[bytes, bytes]]] = {}
        metrics.add_collector(lambda: manager.state)

    async def __call__(self, scope: dict, receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            return
        # -- routing: an HTTP request (here, not in a coroutine of its own: the hot path) --
        method = scope["method"]
        path = scope["path"]
        try:
            if path.startswith("/v2/models/"):
                await self._model_route(scope, receive, send, method, path)
            else:
                await self._route(scope, receive, send, method, path)
        except RequestError as e:
            self._count_error(NO_VARIANT, e.status, e.code)
            await self._error(send, e.status, e.code, e.detail,
                              Attribution.of(self.manager.state))
        except ClientGone:
            return
        except Exception as e:  # noqa: BLE001 - answer 500, keep serving
            log.exception("unexpected error on %s %s", method, path)
            self._count_error(NO_VARIANT, 500, "internal")
            await self._error(send, 500, "internal", f"internal error: {type(e).__name__}",
                              Attribution.of(self.manager.state))

    async def _model_route(self, scope: dict, receive, send: Send, method: str,
                           path: str) -> None:
        """``/v2/models/{name}[/versions/{v}][/infer|/ready]``."""
        name, _, action = path[len("/v2/models/"):].partition("/")
        version = None
        if action.startswith("versions/"):
            version, _, action = action[len("versions/"):].partition("/")
        if action == "infer":
            _require(method, "POST")
            await self._infer(scope, receive, send, name, version, sagemaker=False)
        elif action == "":
            _require(method, "GET")
            await self._json(send, 200, self._model_metadata(name, version))
        elif action == "ready":
            _require(method, "GET")
            self._model_metadata(name, version)  # 404 for an unknown name
            await self._ready(send)
        else:
            raise NotFound(f"no route {path}")

    async def _route(self, scope: dict, receive, send: Send, method: str, path: str) -> None:
        """Every other route: SageMaker's, metrics, health and the server's metadata."""
        if path == "/invocations":
            _require(method, "POST")
            await self._infer(scope, receive, send, None, None, sagemaker=True)
        elif path == "/metrics":
            _require(method, "GET")
            body = await asyncio.to_thread(self.metrics.exposition)
            await _send(send, 200, body, PROMETHEUS)
        elif path in ("/v2/health/ready", "/ping"):
            _require(method, "GET")
            await self._ready(send)
        elif path == "/v2/health/live":
            _require(method, "GET")
            await self._json(send, 200, {"live": True})
        elif path in ("/v2", "/v2/"):
            _require(method, "GET")
            await self._json(send, 200, {"name": "modelgate", "version": "1",
                                         "extensions": []})
        else:
            raise NotFound(f"no route {path}")

    # -- inference --------------------------------------------------------------------------

    async def _infer(self, scope: dict, receive, send: Send, name: str | None,
                     version: str | None, *, sagemaker: bool) -> None:
        started = time.perf_counter()
        state = self.manager.state  # read once: this request stays on this plan's models
        variant: LoadedVariant | None = None
        try:
            incoming, variant = await self._choose(state, scope, receive, name, version,
                                                   sagemaker)
            parsed = _parse(variant, incoming)
            _check_outputs(parsed.outputs, variant)
            rows = parsed.rows
            prediction: Prediction = await variant.batcher.submit(rows, len(rows))
            content_type, payload, base = self._answer(state, variant, incoming, parsed,
                                                       prediction, name)
        except ClientGone:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is answered, then counted
            await self._infer_failed(send, e, state, variant, started)
            return
        await _send(send, 200, payload, content_type,
                    [*self._attribution_headers(state, variant),
                     (b"x-prediction-id", base.encode())])
        ok, latency = self.metrics.bound(state.plan.endpoint, variant.name)
        ok.inc()
        latency.observe(time.perf_counter() - started)
        shadow = state.shadow
        if shadow is not None and shadow is not variant:
            self._spawn(self._shadow(state, shadow, variant, parsed, incoming, prediction))

    async def _choose(self, state: ServingState | None, scope: dict, receive,
                      name: str | None, version: str | None,
                      sagemaker: bool) -> tuple[Incoming, LoadedVariant]:
        """Read the request and choose the variant that answers it."""
        if state is None:
            raise NotReady(self._not_ready_detail())
        explicit = None if sagemaker else self._target(state, name, version)
        headers = _headers(scope)
        body = await self._read_body(receive, headers)
        csv = sagemaker and invocation_media(headers.get(b"content-type", "")) == "csv"
        document = None if csv else decode_json(body)
        unit_id = headers.get(b"x-unit-id") or _custom_unit_id(headers) or unit_id_of(document)
        variant = explicit or state.live_variant(unit_id)
        return Incoming(headers, body, document, csv, sagemaker), variant

    def _answer(self, state: ServingState, variant: LoadedVariant, incoming: Incoming,
                parsed: ParsedRequest, prediction: Prediction,
                name: str | None) -> tuple[bytes, bytes, str]:
        """The answer's content type, body and (request-level) prediction id."""
        generation = state.plan.generation
        base, ids = new_prediction_ids(variant.name, generation, len(parsed.rows),
                                       signer=self.signer)
        if incoming.sagemaker:
            content_type, payload = invocation_answer(variant, prediction, ids,
                                                      incoming.headers.get(b"accept", ""))
        else:
            content_type = JSON
            payload = orjson.dumps(
                infer_answer(name, variant, prediction, parsed, base, ids, generation),
                option=NUMPY_JSON)
        return content_type, payload, base

    def _attribution_headers(self, state: ServingState,
                             variant: LoadedVariant) -> list[tuple[bytes, bytes]]:
        """``Attribution.of(state, variant).headers()``, made once per plan and variant."""
        # Keyed by exactly what the headers are made of (7 and 7.0 are one dict key but
        # two versions as written).
        key = (str(state.plan.generation), variant.name, str(variant.spec.version))
        headers = self._answer_headers.get(key)
        if headers is None:
            if len(self._answer_headers) >= 256:  # plans come and go: keep it bounded
                self._answer_headers.clear()
            headers = self._answer_headers[key] = Attribution.of(state, variant).headers()
        return headers

    async def _infer_failed(self, send: Send, error: Exception, state: ServingState | None,
                            variant: LoadedVariant | None, started: float) -> None:
        """Answer and count a failed inference request against the variant, if one was
        chosen; called while ``error`` is being handled."""
        if isinstance(error, RequestError):
            status, code, detail = error.status, error.code, error.detail
        else:
            log.exception("unexpected error while answering an inference request")
            status, code, detail = 500, "internal", f"internal error: {type(error).__name__}"
        self._count_error(variant.name if variant is not None else NO_VARIANT, status, code,
                          started)
        await self._error(send, status, code, detail, Attribution.of(state, variant))

    def _target(self, state: ServingState, name: str, version: str | None):
        """The explicitly named variant, or ``None`` to route by weight."""
        endpoint = state.plan.endpoint
        if name == endpoint:
            if version is None:
                return None
            candidates = [v for n, v in state.variants.items() if n in state.router.shares]
        elif name in state.variants:
            candidates = [state.variants[name]]
            if version is None:
                return candidates[0]
        else:
            raise NotFound(f"no model named {name!r}: this server serves endpoint {endpoint!r} "
                           f"(variants: {', '.join(state.variants)})", code="model_not_found")
        found = _by_version(candidates, version)
        if found is not None:
            return found
        raise NotFound(f"model {name!r} has no version {version!r} in the plan in use",
                       code="model_not_found")

    async def _read_body(self, receive, headers: dict) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is "
                                  f"{self.max_body_bytes}")
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body = message.get("body", b"")
        if not message.get("more_body", False) and len(body) <= self.max_body_bytes:
            return body  # the usual case: the whole body in one message
        chunks = [body] if body else []
        size = len(body)
        if size > self.max_body_bytes:
            raise PayloadTooLarge(f"the body is larger than the limit of "
                                  f"{self.max_body_bytes} bytes")
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise PayloadTooLarge(f"the body is larger than the limit of "
                                          f"{self.max_body_bytes} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- shadow -----------------------------------------------------------------------------

    async def _shadow(self, state: ServingState, shadow: LoadedVariant, live: LoadedVariant,
                      parsed: ParsedRequest, incoming: Incoming, answer: Prediction) -> None:
        """Ask the shadow the same; count its agreement with the live answer per row, or one
        ``error`` when it fails (a NaN or an infinity included) or ``dropped`` when full."""
        endpoint = state.plan.endpoint
        counter = self.metrics.shadow
        started = time.perf_counter()
        try:
            if shadow.inputs.names == live.inputs.names:
                rows = parsed.rows
            else:  # the shadow reads another schema: parse the same body its way
                rows = _parse(shadow, incoming).rows
            result: Prediction = await shadow.batcher.submit(rows, len(rows))
        except Overloaded:
            counter.labels(endpoint, shadow.name, "dropped").inc()
            return
        except Exception as e:  # noqa: BLE001 - the shadow never affects live traffic
            log.debug("shadow %s failed: %s", shadow.name, e)
            counter.labels(endpoint, shadow.name, "error").inc()
            return
        self.metrics.shadow_latency.labels(endpoint, shadow.name).observe(
            time.perf_counter() - started)
        agree = self._agreement(shadow, answer.labels, result.labels)
        if agree is None:
            counter.labels(endpoint, shadow.name, "error").inc()
            return
        counter.labels(endpoint, shadow.name, "agree").inc(agree)
        counter.labels(endpoint, shadow.name, "disagree").inc(len(answer.labels) - agree)

    def _agreement(self, shadow: LoadedVariant, live: np.ndarray, other: np.ndarray) -> int | None:
        if live.shape != other.shape:
            return None
        if shadow.task == CLASSIFICATION:
            return int(np.sum(np.asarray(live) == np.asarray(other)))
        try:
            same = np.isclose(live.astype(float), other.astype(float),
                              rtol=self.shadow_tolerance, atol=1e-9)
        except (TypeError, ValueError):
            return None
        return int(same.sum())

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- health and metadata ----------------------------------------------------------------

    async def _ready(self, send: Send) -> None:
        state = self.manager.state
        error = self._last_error()
        if state is None:
            await self._json(send, 503, {"ready": False, "code": "not_ready",
                                         "error": self._not_ready_detail(), "last_error": error})
            return
        await self._json(send, 200, {"ready": True, "endpoint": state.plan.endpoint,
                                     "generation": state.plan.generation, "last_error": error})

    def _not_ready_detail(self) -> str:
        failure = self.manager.last_error
        if failure is None:
            return "the serving plan is still loading"
        return f"no plan is loaded: the last attempt failed: {failure.error}"

    def _last_error(self) -> dict | None:
        failure = self.manager.last_error
        if failure is None:
            return None
        return {"error": failure.error, "code": failure.code, "at": failure.at,
                "source": failure.source}

    def _model_metadata(self, name: str, version: str | None) -> dict:
        state = self.manager.state
        if state is None:
            raise NotReady(self._not_ready_detail())
        plan = state.plan
        target = self._target(state, name, version)
        shares = state.router.shares
        if target is None:
            # The endpoint: inputs of its main (highest-weight) variant.
            main = state.variants[max(shares, key=shares.get)]
            versions = [str(v) for v in sorted({state.variants[n].spec.version for n in shares})]
        else:
            main = target
            versions = [str(target.spec.version)]
        inputs = [{"name": f.name, "datatype": "FP64" if f.numeric else "BYTES", "shape": [-1],
                   "parameters": {"type": f.type, "nullable": f.nullable}}
                  for f in main.inputs.features]
        outputs = [{"name": "predict", "datatype": main.labels_datatype, "shape": [-1]}]
        if main.task == CLASSIFICATION:
            outputs.append({"name": "predict_proba", "datatype": "FP64",
                            "shape": [-1, len(main.class_labels)]})
        variants = []
        for variant_name, variant in state.variants.items():
            entry = variant.describe()
            entry.update({"weight": variant.spec.weight, "share": shares.get(variant_name, 0.0),
                          "shadow": variant_name == plan.shadow, "loaded": True})
            variants.append(entry)
        return {
            "name": name,
            "versions": versions,
            "platform": "scikit-learn",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {
                "endpoint": plan.endpoint,
                "instance": self.instance,
                "generation": plan.generation,
                "sticky": plan.sticky,
                "shadow": plan.shadow,
                "variants": variants,
                "loaded_at": state.loaded_at,
                "tensor_input": {"name": "input-0", "datatype": "FP64",
                                 "shape": [-1, len(main.inputs.features)]},
                "last_error": self._last_error(),
            },
        }

    # -- plumbing ---------------------------------------------------------------------------

    def _count_error(self, variant: str, status: int, code: str,
                     started: float | None = None) -> None:
        endpoint = self.manager.endpoint
        self.metrics.requests.labels(endpoint, variant, status_class(status)).inc()
        self.metrics.errors.labels(endpoint, variant, code).inc()
        if started is not None and variant != NO_VARIANT:
            self.metrics.latency.labels(endpoint, variant).observe(time.perf_counter() - started)

    async def _json(self, send: Send, status: int, document: dict) -> None:
        await _send(send, status, orjson.dumps(document, option=NUMPY_JSON), JSON)

    async def _error(self, send: Send, status: int, code: str, detail: str,
                     attribution: Attribution) -> None:
        await _send(send, status, error_body(code, detail, attribution), JSON,
                    attribution.headers())

    async def _lifespan(self, receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.manager.start(asyncio.get_running_loop())
                except Exception as e:  # noqa: BLE001
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.manager.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _parse(variant: LoadedVariant, incoming: Incoming) -> ParsedRequest:
    if incoming.csv:
        return ParsedRequest(rows=rows_from_csv(incoming.body, variant.inputs))
    if incoming.sagemaker:
        return parse_invocation_document(incoming.document, variant.inputs)
    return parse_infer(incoming.document, variant.inputs)


def _by_version(candidates: list[LoadedVariant], version: str) -> LoadedVariant | None:
    """The candidate serving ``version``: its number (as answers report it), else its
    registry id (as servers reported before plans carried numbers). A value that is one
    variant's number and another's id is refused: a caller pinned to an id from before
    must never silently reach another version."""
    by_number = [c for c in candidates if str(c.spec.version) == version]
    by_id = [c for c in candidates if str(c.spec.version_id) == version]
    if by_number and by_id and by_number[0] is not by_id[0]:
        raise RequestError(f"version {version!r} is one variant's number and another's "
                           "registry id; name the variant instead", code="ambiguous_version",
                           status=409)
    return (by_number or by_id or [None])[0]


def _check_outputs(wanted: tuple[str, ...] | None, variant: LoadedVariant) -> None:
    """Refuse unknown OIP output names before predicting anything."""
    if wanted is None:
        return
    available = ("predict", "predict_proba") if variant.task == CLASSIFICATION else ("predict",)
    unknown = [o for o in wanted if o not in available]
    if unknown:
        raise BadInput(f"unknown output(s) {', '.join(unknown)}; this model has "
                       f"{', '.join(available)}", code="unknown_output")


def _headers(scope: dict) -> dict:
    """The few request headers the server reads, decoded (names are lower-case in ASGI)."""
    found = {}
    for key, value in scope["headers"]:
        if key in (b"content-type", b"accept", b"x-unit-id",
                   b"x-amzn-sagemaker-custom-attributes"):
            found[key] = value.decode("latin-1")
        elif key == b"content-length":
            found[key] = value.decode("latin-1")
    return found


def _custom_unit_id(headers: dict) -> str | None:
    """SageMaker passes ``CustomAttributes`` through; ``unit_id=...`` in them is a unit id."""
    attributes = headers.get(b"x-amzn-sagemaker-custom-attributes")
    if not attributes:
        return None
    for part in attributes.split(","):
        key, _, value = part.strip().partition("=")
        if key == "unit_id" and value:
            return value
    return None


def _require(method: str, expected: str) -> None:
    if method != expected:
        raise RequestError(f"use {expected} here", code="method_not_allowed", status=405)


async def _send(send: Send, status: int, body: bytes, content_type: bytes,
                extra: list | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
