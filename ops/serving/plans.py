"""Holding the plan in use and switching to a new one without dropping a request.

A new plan is read and every one of its variants is verified, loaded and warmed in a
background thread while the old plan keeps serving. Only then is ``PlanManager.state``
replaced, by a single reference assignment on the event loop: a request reads ``state``
once when it starts and keeps using that state's models, so requests in flight finish on
the models they started with. Variants whose artifact, schema and baseline are unchanged are
carried over (a weight change reloads nothing). A plan that fails anywhere (bad JSON, a
checksum mismatch, a corrupt or unsafe artifact) is logged, counted and shown on the
ready/metadata endpoints, and the old plan stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ops.exceptions import OpsError
from ops.plan import PlanError, ServingPlan
from ops.serving.exceptions import VariantLoadError
from ops.serving.metrics import ServerMetrics
from ops.serving.routing import Router
from ops.serving.variants import (
    BatchingOptions,
    LoadedVariant,
    load_variant,
    variant_fingerprint,
)

log = logging.getLogger("ops.serving")


@dataclass(frozen=True)
class ServingState:
    """One plan with all of its variants loaded: immutable, replaced whole on reload."""

    plan: ServingPlan
    variants: dict[str, LoadedVariant]
    router: Router
    loaded_at: float = field(default_factory=time.time)

    def live_variant(self, unit_id: str | None) -> LoadedVariant:
        return self.variants[self.router.choose(unit_id)]

    @property
    def shadow(self) -> LoadedVariant | None:
        return self.variants.get(self.plan.shadow) if self.plan.shadow else None


@dataclass
class LoadFailure:
    error: str
    code: str
    at: float
    source: str


class PlanManager:
    def __init__(self, plan_path: Path, metrics: ServerMetrics, executor: Executor | None,
                 batching: BatchingOptions, poll_interval: float = 0.5):
        self.plan_path = Path(plan_path)
        self.metrics = metrics
        self.executor = executor
        self.batching = batching
        self.poll_interval = poll_interval
        self.state: ServingState | None = None
        self.last_error: LoadFailure | None = None
        self._seen: tuple | None = None
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-loader")
        self._reload_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task] = []
        self._endpoint_label = "unknown"

    @property
    def endpoint(self) -> str:
        return self.state.plan.endpoint if self.state is not None else self._endpoint_label

    # -- loading (worker thread) ------------------------------------------------------------

    def read_plan(self) -> ServingPlan:
        try:
            text = self.plan_path.read_text()
        except OSError as e:
            raise PlanError(f"the plan file {self.plan_path} cannot be read: "
                            f"{e.strerror or e}") from e
        plan = ServingPlan.from_json(text)
        if sum(v.weight for v in plan.variants if v.name != plan.shadow) <= 0:
            raise PlanError("the plan sends no traffic anywhere")
        return plan

    def build_state(self, plan: ServingPlan, current: ServingState | None) -> ServingState:
        """Load every variant of ``plan`` (reusing unchanged ones); raises on any failure."""
        carried = {}
        if current is not None:
            carried = {v.fingerprint: v for v in current.variants.values()}
        variants: dict[str, LoadedVariant] = {}
        for spec in plan.variants:
            reused = carried.get(variant_fingerprint(spec))
            if reused is not None:
                reused.spec = spec  # same model; weight or replicas may differ
                variants[spec.name] = reused
                continue
            variants[spec.name] = load_variant(spec, base_dir=self.plan_path.parent,
                                               executor=self.executor, batching=self.batching)
        return ServingState(plan=plan, variants=variants,
                            router=Router(plan.endpoint, plan.weights(), sticky=plan.sticky))

    def _load(self, current: ServingState | None) -> ServingState:
        return self.build_state(self.read_plan(), current)

    # -- switching (event loop) -------------------------------------------------------------

    async def reload(self, reason: str) -> bool:
        """Load the plan file and switch to it; ``False`` (old plan kept) when it fails."""
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            self._seen = self._signature()
            loop = asyncio.get_running_loop()
            current = self.state
            try:
                state = await loop.run_in_executor(self._loader, self._load, current)
            except (OpsError, VariantLoadError) as e:
                self._fail(e, getattr(e, "code", "invalid_plan"), reason)
                return False
            except Exception as e:  # noqa: BLE001 - a plan must never take the server down
                log.exception("unexpected error while loading the plan")
                self._fail(e, "load_failed", reason)
                return False
            self._switch(state, reason)
            return True

    def _switch(self, state: ServingState, reason: str) -> None:
        previous = self.state
        self.state = state  # the atomic switch: new requests see the new plan from here on
        self.last_error = None
        endpoint = state.plan.endpoint
        self._endpoint_label = endpoint
        self.metrics.plan_generation.labels(endpoint).set(state.plan.generation)
        self.metrics.plan_reloads.labels(endpoint).inc()
        self.metrics.plan_load_failures.labels(endpoint)  # a zero series before any failure
        if state.plan.shadow:
            for result in ("agree", "disagree", "error", "dropped"):
                self.metrics.shadow.labels(endpoint, state.plan.shadow, result)
        for name, variant in state.variants.items():
            self.metrics.model_load_seconds.labels(endpoint, name).set(variant.load_seconds)
            variant.batcher.on_batch = self._batch_observer(endpoint, name)
        if previous is not None:
            retired = set(previous.variants) - set(state.variants)
            for name in retired:
                try:
                    self.metrics.model_load_seconds.remove(previous.plan.endpoint, name)
                except KeyError:
                    pass
        log.info("serving plan generation %s of %s (%s): %s", state.plan.generation, endpoint,
                 reason, ", ".join(f"{n}={w:.3f}" for n, w in state.router.shares.items()))

    def _batch_observer(self, endpoint: str, variant: str):
        rows_histogram = self.metrics.batch_size.labels(endpoint, variant)
        requests_histogram = self.metrics.batch_requests.labels(endpoint, variant)

        def observe(requests: int, rows: int) -> None:
            rows_histogram.observe(rows)
            requests_histogram.observe(requests)

        return observe

    def _fail(self, error: Exception, code: str, reason: str) -> None:
        detail = getattr(error, "detail", None) or str(error)
        self.last_error = LoadFailure(error=detail, code=code, at=time.time(),
                                      source=str(self.plan_path))
        self.metrics.plan_load_failures.labels(self.endpoint).inc()
        kept = (f"generation {self.state.plan.generation} keeps serving" if self.state
                else "nothing is serving yet")
        log.error("plan %s failed to load (%s): [%s] %s; %s", self.plan_path, reason, code,
                  detail, kept)

    # -- watching ---------------------------------------------------------------------------

    def _signature(self) -> tuple | None:
        try:
            st = os.stat(self.plan_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)

    async def watch(self) -> None:
        """Poll the plan file's stat and reload when it changes."""
        while True:
            await asyncio.sleep(self.poll_interval)
            signature = self._signature()
            if signature is not None and signature != self._seen:
                await self.reload("plan file changed")

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tasks.append(loop.create_task(self.reload("start")))
        self._tasks.append(loop.create_task(self.watch()))
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup, loop)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            log.warning("SIGHUP reload is not available in this process")

    def _on_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tasks.append(loop.create_task(self.reload("SIGHUP")))
        self._tasks = [t for t in self._tasks if not t.done()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._loader.shutdown(wait=False, cancel_futures=True)
