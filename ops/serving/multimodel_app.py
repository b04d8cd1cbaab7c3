"""The model server in multi-model mode: one process, a catalog of models loaded on demand
(``ops.serving.multimodel``, decision 68).

Routes: ``/v2/models/{name}[/versions/{v}]/infer``, ``/v2/models/{name}[/ready]``, the health
routes, ``/metrics``, and SageMaker's ``/invocations`` naming the model in
``X-Amzn-SageMaker-Target-Model`` (``<name>.tar.gz`` or ``<name>``). Under a SageMaker
multi-model endpoint (``MODELGATE_MULTI_MODEL=sagemaker``) SageMaker drives the container's
model API instead: ``POST /models`` (load the model SageMaker downloaded under
``/opt/ml/models``), ``GET /models[/{name}]``, ``POST /models/{name}/invoke`` and
``DELETE /models/{name}``.

A request's body is read before its model is leased, so a slow upload holds no model; the
lease lasts until the answer is computed. Metrics use the plan server's series with the model
as the ``variant`` label, bounded by ``TopLabels``; names not in the catalog never become
labels.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import orjson

from ops.exceptions import PermanentError
from ops.plan import Variant
from ops.serving.answers import (
    JSON,
    NUMPY_JSON,
    Attribution,
    error_body,
    infer_answer,
    invocation_answer,
)
from ops.serving.app import PROMETHEUS, ClientGone, Incoming, _check_outputs, _parse, _send
from ops.serving.exceptions import BadInput, NotFound, NotReady, PayloadTooLarge, RequestError
from ops.serving.ids import Signer, new_prediction_ids
from ops.serving.inputs import decode_json, invocation_media
from ops.serving.metrics import NO_VARIANT, ServerMetrics, status_class
from ops.serving.multimodel import Catalog, CatalogModel, ModelCache, loaded_size
from ops.serving.toplabels import OTHER, TopLabels
from ops.serving.variants import BatchingOptions, load_variant

log = logging.getLogger("ops.serving")

TRIM_INTERVAL = 0.5  # seconds between heap trims after evictions
LOADERS = 1  # one loading thread: one malloc arena for loads, one load in flight
_LIBC = None
MODE_ENV = "MODELGATE_MULTI_MODEL"  # "sagemaker": SageMaker's model API drives the catalog
SAGEMAKER_MODELS_ROOT = Path("/opt/ml/models")
TARGET_HEADER = b"x-amzn-sagemaker-target-model"
WARM_IMPORTS = ("pandas", "skops.io", "sklearn.linear_model", "sklearn.ensemble",
                "sklearn.tree", "sklearn.pipeline", "sklearn.preprocessing", "sklearn.compose")
_READ_HEADERS = (b"content-type", b"accept", b"content-length", TARGET_HEADER)


class _MetricsView:
    """What ``ServerMetrics``' variant collector reads: the loaded models with own labels."""

    def __init__(self, server: MultiModelServer):
        self._server = server

    @property
    def plan(self):
        return self

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    @property
    def router(self):
        return self

    @property
    def shares(self) -> dict:
        return {}

    @property
    def variants(self) -> dict:
        cache, top = self._server.cache, self._server.top
        if cache is None:
            return {}
        return {name: model for name, model in cache.loaded() if top.own_label(name)}


class MultiModelServer:
    """ASGI application serving the catalog at ``catalog_path`` (or SageMaker's models)."""

    def __init__(self, catalog_path: Path | None, metrics: ServerMetrics,
                 executor: Executor | None, batching: BatchingOptions, *,
                 poll_interval: float = 0.5, signer: Signer | None = None,
                 max_body_bytes: int = 10 * 1024 * 1024, sagemaker_catalog: Catalog | None = None,
                 models_root: Path = SAGEMAKER_MODELS_ROOT, window: float | None = None):
        self.catalog_path = Path(catalog_path) if catalog_path is not None else None
        self.metrics = metrics
        self.executor = executor
        self.batching = batching
        self.poll_interval = poll_interval
        self.signer = signer
        self.max_body_bytes = max_body_bytes
        self.models_root = models_root
        self.sagemaker_api = sagemaker_catalog is not None
        self.cache: ModelCache | None = None
        self.top = TopLabels(0)
        self._window = window
        self.last_error: str | None = None
        self._seen: tuple | None = None
        self._base_dirs: dict[str, Path] = {}  # SageMaker: the folder of each model
        self._tasks: list[asyncio.Task] = []
        self._loader = ThreadPoolExecutor(max_workers=LOADERS, thread_name_prefix="model-loader")
        self._trimmed_at = 0.0
        if sagemaker_catalog is not None:
            self._install(sagemaker_catalog)
        metrics.add_collector(lambda: _MetricsView(self) if self.cache is not None else None)
        metrics.registry.register(_CacheCollector(self))

    @property
    def endpoint(self) -> str:
        return self.cache.catalog.endpoint if self.cache is not None else "unknown"

    # -- the catalog ------------------------------------------------------------------------

    def _install(self, catalog: Catalog) -> None:
        if self.cache is None:
            self.cache = ModelCache(catalog, self._load, measure=loaded_size,
                                    on_evict=self._evicted, load_executor=self._loader)
        else:
            for name in set(self.cache.catalog.models) - set(catalog.models):
                self.top.forget(name)
            self.cache.replace_catalog(catalog)
        if self.top.limit != catalog.top_models:
            kwargs = {"window": self._window} if self._window is not None else {}
            self._drop_labels(set(self.top.top))
            self.top = TopLabels(catalog.top_models, on_drop=self._drop_labels, **kwargs)
        self.metrics.plan_generation.labels(catalog.endpoint).set(catalog.generation)

    def _load(self, model: CatalogModel):
        base_dir = self._base_dirs.get(model.name) or (
            self.catalog_path.parent if self.catalog_path else Path("."))
        variant = load_variant(model.spec, base_dir=base_dir, executor=self.executor,
                               batching=self.batching)
        endpoint, name = self.endpoint, model.name
        variant.batcher.on_batch = lambda requests, rows: self._observe_batch(
            endpoint, name, requests, rows)
        self.metrics.model_load_seconds.labels(endpoint, self._label_of(name)).set(
            variant.load_seconds)
        return variant

    def _observe_batch(self, endpoint: str, name: str, requests: int, rows: int) -> None:
        label = self._label_of(name)
        self.metrics.batch_size.labels(endpoint, label).observe(rows)
        self.metrics.batch_requests.labels(endpoint, label).observe(requests)

    def _drop_labels(self, names: set[str]) -> None:
        """Remove the series of models that lost their own label (``TopLabels``)."""
        metrics = self.metrics
        for metric in (metrics.requests, metrics.errors, metrics.latency, metrics.batch_size,
                       metrics.batch_requests, metrics.model_load_seconds):
            # prometheus_client lists no children publicly; its own lock guards remove().
            for key in list(metric._metrics):
                if len(key) > 1 and key[1] in names:
                    metric.remove(*key)

    def _evicted(self, name: str) -> None:
        log.debug("model %s evicted from %s", name, self.endpoint)
        now = time.monotonic()
        if now - self._trimmed_at >= TRIM_INTERVAL:
            # Freed models stay in the process's heap unless returned: glibc gives memory
            # back only when asked (or at the top of the heap), so RSS would creep with churn.
            # An evicted model is held by reference cycles until a full collection, which
            # the cyclic collector runs rarely: at 300 loads/s RSS grew 8.6 MiB for 4 MiB of
            # models (4.9 with this). Cheap, as start-up's objects are frozen out of it.
            self._trimmed_at = now
            gc.collect()
            _malloc_trim()

    def _label_of(self, name: str) -> str:
        return name if self.top.own_label(name) else OTHER

    def reload(self, reason: str) -> bool:
        """Read the catalog file and serve it; the previous catalog stays on failure."""
        try:
            self._seen = _signature(self.catalog_path)
            catalog = Catalog.from_json(self.catalog_path.read_text())
        except (OSError, PermanentError) as e:
            self.last_error = getattr(e, "detail", None) or str(e)
            log.error("catalog %s not loaded (%s): %s", self.catalog_path, reason,
                      self.last_error)
            self.metrics.plan_load_failures.labels(self.endpoint).inc()
            return False
        self._install(catalog)
        self.last_error = None
        self.metrics.plan_reloads.labels(catalog.endpoint).inc()
        log.info("catalog generation %s of %s (%s): %d models, budget %d bytes",
                 catalog.generation, catalog.endpoint, reason, len(catalog.models),
                 catalog.memory_budget)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            signature = _signature(self.catalog_path)
            if signature is not None and signature != self._seen:
                self.reload("catalog file changed")

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: dict, receive, send) -> None:
        method, path = scope["method"], scope["path"]
        try:
            await self._route(scope, receive, send, method, path)
        except RequestError as e:
            self._count(NO_VARIANT, e.status, e.code)
            await self._error(send, e, Attribution(self._generation()))
        except ClientGone:
            return
        except Exception as e:  # noqa: BLE001 - answer 500, keep serving
            log.exception("unexpected error on %s %s", method, path)
            self._count(NO_VARIANT, 500, "internal")
            await self._error(send, RequestError(f"internal error: {type(e).__name__}",
                                                 code="internal", status=500), Attribution())

    async def _route(self, scope, receive, send, method: str, path: str) -> None:
        if path.startswith("/v2/models/"):
            name, _, action = path[len("/v2/models/"):].partition("/")
            version = None
            if action.startswith("versions/"):
                version, _, action = action[len("versions/"):].partition("/")
            if action == "infer":
                _require(method, "POST")
                await self._infer(scope, receive, send, name, version, sagemaker=False)
            elif action in ("", "ready"):
                _require(method, "GET")
                await self._json(send, 200, self._metadata(name, ready=action == "ready"))
            else:
                raise NotFound(f"no route {path}")
        elif path == "/invocations":
            _require(method, "POST")
            await self._infer(scope, receive, send, None, None, sagemaker=True)
        elif self.sagemaker_api and (path == "/models" or path.startswith("/models/")):
            await self._sagemaker_models(scope, receive, send, method, path)
        elif path == "/metrics":
            _require(method, "GET")
            body = await asyncio.to_thread(self.metrics.exposition)
            await _send(send, 200, body, PROMETHEUS)
        elif path in ("/v2/health/ready", "/ping"):
            _require(method, "GET")
            if self.cache is None:
                raise NotReady(f"no catalog is loaded: {self.last_error or 'still loading'}")
            await self._json(send, 200, {"ready": True, "endpoint": self.endpoint,
                                         "generation": self._generation(),
                                         "last_error": self.last_error})
        elif path == "/v2/health/live":
            await self._json(send, 200, {"live": True})
        else:
            raise NotFound(f"no route {path}")

    # -- inference --------------------------------------------------------------------------

    async def _infer(self, scope, receive, send, name: str | None, version: str | None, *,
                     sagemaker: bool) -> None:
        started = time.perf_counter()
        cache = self.cache
        if cache is None:
            raise NotReady(f"no catalog is loaded: {self.last_error or 'still loading'}")
        headers = _headers(scope)
        if name is None:
            name = _target_model(headers)
        cache.lookup(name)  # a 404 naming it, before the body is read
        label = self.top.label(name)
        attribution = Attribution(cache.catalog.generation, name)
        try:
            body = await self._read_body(receive, headers)
            async with await cache.acquire(name) as variant:
                attribution = Attribution(cache.catalog.generation, name,
                                          str(variant.spec.version))
                content_type, payload, base = await self._predict(
                    variant, name, version, headers, body, sagemaker)
        except ClientGone:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is answered, then counted
            error = e if isinstance(e, RequestError) else RequestError(
                f"internal error: {type(e).__name__}", code="internal", status=500)
            if not isinstance(e, RequestError):
                log.exception("unexpected error while answering %s", name)
            # The label again: the model may have lost its place while it was answered
            # (its series removed then), and a series must not come back for it.
            self._count(self._label_of(name), error.status, error.code, started)
            await self._error(send, error, attribution)
            return
        await _send(send, 200, payload, content_type,
                    [*attribution.headers(), (b"x-prediction-id", base.encode())])
        label = self._label_of(name)
        self.metrics.requests.labels(self.endpoint, label, "2xx").inc()
        self.metrics.latency.labels(self.endpoint, label).observe(time.perf_counter() - started)

    async def _predict(self, variant, name: str, version: str | None, headers: dict,
                       body: bytes, sagemaker: bool) -> tuple[bytes, bytes, str]:
        if version is not None and version not in (str(variant.spec.version),
                                                   str(variant.spec.version_id)):
            raise NotFound(f"model {name!r} serves version {variant.spec.version}, not "
                           f"{version!r}", code="model_not_found")
        csv = sagemaker and invocation_media(headers.get(b"content-type", "")) == "csv"
        incoming = Incoming(headers, body, None if csv else decode_json(body), csv, sagemaker)
        parsed = _parse(variant, incoming)
        _check_outputs(parsed.outputs, variant)
        prediction = await variant.batcher.submit(parsed.rows, len(parsed.rows))
        generation = self._generation()
        base, ids = new_prediction_ids(name, generation, len(parsed.rows), signer=self.signer)
        if sagemaker:
            content_type, payload = invocation_answer(variant, prediction, ids,
                                                      headers.get(b"accept", ""))
            return content_type, payload, base
        answer = infer_answer(name, variant, prediction, parsed, base, ids, generation)
        return JSON, orjson.dumps(answer, option=NUMPY_JSON), base

    def _metadata(self, name: str, *, ready: bool) -> dict:
        cache = self.cache
        if cache is None:
            raise NotReady(f"no catalog is loaded: {self.last_error or 'still loading'}")
        model = cache.lookup(name)
        loaded = cache.is_loaded(name)
        if ready:
            return {"name": name, "ready": True, "loaded": loaded}
        spec = model.spec
        return {"name": name, "versions": [str(spec.version)], "platform": "scikit-learn",
                "inputs": [{"name": f.get("name"), "parameters": {"type": f.get("type")}}
                           for f in spec.input_schema if isinstance(f, dict)],
                "parameters": {"endpoint": cache.catalog.endpoint, "loaded": loaded,
                               "task": spec.task, "sha256": spec.sha256,
                               "memory_bytes": model.memory_bytes,
                               "loaded_bytes": cache.size_of(name),
                               "generation": cache.catalog.generation}}

    # -- SageMaker's multi-model container API ----------------------------------------------

    async def _sagemaker_models(self, scope, receive, send, method: str, path: str) -> None:
        name, _, action = path[len("/models"):].strip("/").partition("/")
        cache = self.cache
        if not name:
            if method == "POST":
                body = decode_json(await self._read_body(receive, _headers(scope)))
                await self._json(send, 200, await self._sagemaker_load(body))
                return
            _require(method, "GET")
            await self._json(send, 200, {"models": [
                {"modelName": n, "modelUrl": str(self._base_dirs.get(n, ""))}
                for n in cache.catalog.models]})
        elif action == "invoke":
            _require(method, "POST")
            await self._infer(scope, receive, send, name, None, sagemaker=True)
        elif method == "DELETE":
            cache.lookup(name)
            models = {n: m for n, m in cache.catalog.models.items() if n != name}
            self._install(_with_models(cache.catalog, models))
            self._base_dirs.pop(name, None)
            await self._json(send, 200, {"status": f"model {name} unloaded"})
        else:
            _require(method, "GET")
            cache.lookup(name)
            await self._json(send, 200, {"modelName": name,
                                         "modelUrl": str(self._base_dirs.get(name, ""))})

    async def _sagemaker_load(self, body) -> dict:
        """SageMaker downloaded ``<name>.tar.gz`` to ``url``: read its ``model.json`` (the
        catalog entry ``ops.backends.sagemaker.multimodel`` packed) and load it."""
        if not isinstance(body, dict) or not body.get("model_name") or not body.get("url"):
            raise BadInput("send {\"model_name\": ..., \"url\": ...}")
        name, folder = str(body["model_name"]), Path(str(body["url"])).resolve()
        if not folder.is_relative_to(self.models_root.resolve()):
            raise BadInput(f"models load only from under {self.models_root}")
        if name in self.cache.catalog.models:
            raise RequestError(f"model {name} is already loaded", code="conflict", status=409)
        try:
            entry = orjson.loads((folder / "model.json").read_bytes())
            fields = set(Variant.__dataclass_fields__)
            spec = Variant(**{**{k: v for k, v in entry.items() if k in fields}, "name": name})
            model = CatalogModel(spec, int(entry["memory_bytes"]))
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise BadInput(f"{folder}/model.json is not a model entry: {e}") from e
        try:
            catalog = _with_models(self.cache.catalog, {**self.cache.catalog.models,
                                                        name: model})
        except PermanentError as e:  # larger than the whole budget
            raise RequestError(str(e), code="over_budget", status=507) from e
        self._base_dirs[name] = folder
        self._install(catalog)
        lease = await self.cache.acquire(name)
        lease.release()
        return {"status": f"model {name} loaded"}

    # -- plumbing ---------------------------------------------------------------------------

    def _generation(self) -> int | None:
        return self.cache.catalog.generation if self.cache is not None else None

    def _count(self, label: str, status: int, code: str, started: float | None = None) -> None:
        endpoint = self.endpoint
        self.metrics.requests.labels(endpoint, label, status_class(status)).inc()
        self.metrics.errors.labels(endpoint, label, code).inc()
        if started is not None and label != NO_VARIANT:
            self.metrics.latency.labels(endpoint, label).observe(time.perf_counter() - started)

    async def _read_body(self, receive, headers: dict) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is "
                                  f"{self.max_body_bytes}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"the body is larger than {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _json(self, send, status: int, document: dict) -> None:
        await _send(send, status, orjson.dumps(document, option=NUMPY_JSON), JSON)

    async def _error(self, send, error: RequestError, attribution: Attribution) -> None:
        await _send(send, error.status, error_body(error.code, error.detail, attribution), JSON,
                    attribution.headers())

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Before ready: the first cold load would otherwise pay these imports (4 s
                # and more on a busy machine) on top of its own 20 ms.
                await asyncio.to_thread(_warm_imports)
                # What start-up made lives as long as the process: out of every collection.
                gc.freeze()
                if self.catalog_path is not None:
                    self.reload("start")
                    loop = asyncio.get_running_loop()
                    self._tasks.append(loop.create_task(self._watch()))
                    try:
                        loop.add_signal_handler(signal.SIGHUP, self.reload, "SIGHUP")
                    except (NotImplementedError, RuntimeError, ValueError):
                        log.warning("SIGHUP reload is not available in this process")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                self._loader.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


class _CacheCollector:
    """The cache's own series: models and bytes loaded, the budget, loads and evictions."""

    def __init__(self, server: MultiModelServer):
        self._server = server

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from ops import promql

        cache = self._server.cache
        if cache is None:
            return
        endpoint = [cache.catalog.endpoint]
        gauges = ((promql.MULTIMODEL_LOADED, "Models loaded in memory.", len(cache.loaded())),
                  (promql.MULTIMODEL_BYTES, "Bytes the loaded models are accounted for.",
                   cache.used_bytes),
                  (promql.MULTIMODEL_BUDGET, "The endpoint's memory budget for models.",
                   cache.catalog.memory_budget))
        for name, text, value in gauges:
            family = GaugeMetricFamily(name, text, labels=["endpoint"])
            family.add_metric(endpoint, value)
            yield family
        events = CounterMetricFamily(promql.MULTIMODEL_EVENTS, "Model loads, load failures, "
                                     "evictions and loads refused for want of memory.",
                                     labels=["endpoint", "event"])
        stats = cache.stats
        for event, value in (("load", stats.loads), ("load_failed", stats.load_failures),
                             ("evict", stats.evictions), ("refused", stats.refused)):
            events.add_metric([*endpoint, event], value)
        yield events


def _malloc_trim() -> None:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc (musl, macOS): nothing to trim
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def _warm_imports() -> None:
    import importlib

    for module in WARM_IMPORTS:
        try:
            importlib.import_module(module)
        except ImportError:  # an image without one of them serves models without it
            log.debug("cannot pre-import %s", module)


def _with_models(catalog: Catalog, models: dict) -> Catalog:
    return Catalog(endpoint=catalog.endpoint, models=models,
                   memory_budget=catalog.memory_budget, generation=catalog.generation,
                   top_models=catalog.top_models, unready=catalog.unready)


def sagemaker_catalog(environ=os.environ) -> Catalog:
    """The empty catalog a SageMaker multi-model container starts with (models arrive by
    ``POST /models``); its budget and label limit come from the container's environment."""
    return Catalog(endpoint=environ.get("MODELGATE_ENDPOINT", "sagemaker"), models={},
                   memory_budget=int(environ.get("MODELGATE_MEMORY_BUDGET", str(1 << 30))),
                   top_models=int(environ.get("MODELGATE_TOP_MODELS", "20")))


def _target_model(headers: dict) -> str:
    target = headers.get(TARGET_HEADER)
    if not target:
        raise BadInput("name the model in the X-Amzn-SageMaker-Target-Model header",
                       code="missing_target_model")
    return target.removesuffix(".tar.gz")


def _headers(scope: dict) -> dict:
    return {k: v.decode("latin-1") for k, v in scope["headers"] if k in _READ_HEADERS}


def _require(method: str, expected: str) -> None:
    if method != expected:
        raise RequestError(f"use {expected} here", code="method_not_allowed", status=405)


def _signature(path: Path | None) -> tuple | None:
    try:
        st = os.stat(path)
    except (OSError, TypeError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
