"""The model server's hot path attacked (a review of its one-write answers, batches on the
event loop, cached attribution headers and prediction-id randomness read in blocks): a big
request or a waiting predict never holds the event loop, inlining is tunable where the
server runs, a forked child takes ids, and the headers are those of the plan in use."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pytest

from ops.plan import ServingPlan, Variant
from ops.schema import Feature
from ops.serving.app import ModelServer
from ops.serving.batching import MicroBatcher
from ops.serving.metrics import ServerMetrics
from ops.serving.plans import PlanManager, ServingState
from ops.serving.routing import Router
from ops.serving.variants import NUMPY, BatchingOptions, LoadedVariant

ENDPOINT = "churn"
FEATURES = [Feature(name=n) for n in ("a", "b", "c")]
INLINE_AFTER = 16  # ops.serving.batching.INLINE_AFTER in bbe0ddf


def run(coroutine):
    # In its own thread: browser tests may keep an event loop running in the main thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def spin(cpu_seconds: float) -> None:
    """Burn this much CPU in the calling thread (what a real predict does)."""
    until = time.thread_time() + cpu_seconds
    while time.thread_time() < until:
        pass


class PerRowModel:
    """A regressor costing ``per_row`` seconds of CPU a row (a linear model, a forest through
    onnxruntime: cost grows with the rows); records the thread of every predict call."""

    def __init__(self, per_row: float):
        self.per_row = per_row
        self.calls: list[tuple[int, threading.Thread]] = []

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        self.calls.append((len(X), threading.current_thread()))
        spin(self.per_row * len(X))
        return 2 * X[:, 0]


def _inline(seconds: float) -> dict:
    """``inline_below`` where it exists (so these tests also run on bbe0ddf~1)."""
    return {"inline_below": seconds} if "inline_below" in BatchingOptions.__dataclass_fields__ \
        else {}


def served(model, executor, *, inline_us: float = 200.0) -> ModelServer:
    spec = Variant(name="v1", version_id=7, artifact_uri="file:///m/v1.skops", sha256="0" * 64,
                   weight=1.0, task="regression")
    plan = ServingPlan(ENDPOINT, (spec,), generation=3)
    batching = BatchingOptions(timeout=0.0, **_inline(inline_us / 1e6))
    metrics = ServerMetrics()
    manager = PlanManager(Path("/nonexistent/plan.json"), metrics, None, batching)
    loaded = {"v1": LoadedVariant(spec, model, FEATURES, mode=NUMPY, derive_labels=False,
                                  load_seconds=0.0, executor=executor, batching=batching)}
    manager.state = ServingState(plan, loaded, Router(ENDPOINT, plan.weights()))
    return ModelServer(manager, metrics)


async def answer_headers(app) -> dict:
    return dict((await exchange(app, [[1.0, 0.0, 0.0]]))[0]["headers"])


async def exchange(app, rows) -> list:
    raw = orjson.dumps({"instances": rows})
    scope = {"type": "http", "method": "POST", "path": f"/v2/models/{ENDPOINT}/infer",
             "headers": [(b"content-type", b"application/json")]}
    sent = []

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def post(app, rows) -> int:
    return (await exchange(app, rows))[0]["status"]


# -- 1. HIGH: one request of many rows is predicted on the event loop -----------------------

def test_a_request_far_larger_than_the_measured_batches_is_not_predicted_on_the_event_loop():
    """16 one-row requests make the variant "cheap" (tens of µs a batch); then ONE request of
    20,000 rows (~0.5 MB of JSON, far under the 10 MiB body limit) costs ~0.4 s of CPU. The
    inline decision looks only at the past average, never at the batch in hand, and a request
    larger than max_batch_rows is always taken whole: so it runs on the event loop, and no
    health check, accept, other endpoint or plan reload is served meanwhile. Before bbe0ddf
    it ran in the pool. Any client can do this, repeatedly (each big batch sends the variant
    to the pool only until cheap batches bring the average down again)."""
    model = PerRowModel(per_row=20e-6)
    with ThreadPoolExecutor(1) as executor:
        app = served(model, executor)

        async def scenario():
            loop_thread = threading.current_thread()
            for i in range(INLINE_AFTER + 2):
                assert await post(app, [[float(i), 0.0, 0.0]]) == 200
            gaps = []

            async def heartbeat():
                last = time.perf_counter()
                while True:
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            beat = asyncio.create_task(heartbeat())
            await asyncio.sleep(0.02)
            status = await post(app, [[1.0, 0.0, 0.0]] * 20_000)
            await asyncio.sleep(0.02)  # the heartbeat's late tick, if the loop was held
            beat.cancel()
            return loop_thread, status, max(gaps)

        loop_thread, status, worst_gap = run(scenario())
    assert status == 200
    rows, thread = model.calls[-1]
    assert rows == 20_000
    assert thread is not loop_thread, (  # (both threads are named ThreadPoolExecutor-*)
        f"a 20,000-row batch (~{rows * model.per_row:.2f} s of CPU) ran on the event loop; "
        f"the loop stood still for {worst_gap:.3f} s")


# -- 2. MEDIUM: thread_time() cannot see a predict that waits -------------------------------

def test_a_predict_that_waits_rather_than_computes_is_not_moved_onto_the_event_loop():
    """The inline rule measures ``time.thread_time()`` of the calling thread: CPU only. A
    predict whose time is spent waiting - on the OpenMP/BLAS/onnxruntime worker threads it
    hands the work to (LightGBM, XGBoost, a multi-threaded session), on a lock, on I/O - costs
    the calling thread almost no CPU, so it is classed as cheap and every later batch blocks
    the event loop for its whole wall time, for ever (the average never rises). Here: 20 ms
    of waiting a batch. Before bbe0ddf every batch ran in the pool."""
    threads = []

    def process(items):
        threads.append(threading.current_thread())
        time.sleep(0.02)  # the work is done by other threads; this one waits
        return [item * 2 for item in items]

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(process, executor, timeout=0.0, **_inline(200e-6))
            for i in range(INLINE_AFTER + 3):
                assert await batcher.submit(i) == i * 2
        return threading.current_thread()

    loop_thread = run(scenario())
    on_loop = [t is loop_thread for t in threads]
    assert not any(on_loop), (
        f"{sum(on_loop)} batches of 20 ms wall time ran on the event loop: {on_loop}")


# -- 3. LOW: the new tunable does not reach deployed servers --------------------------------

def test_batch_inlining_can_be_tuned_through_the_environment_like_every_batching_tunable(
        monkeypatch):
    """Every other batching tunable has a MODELGATE_* variable, passed on by the local and
    Kubernetes backends (README's table); SageMaker starts ``serve`` with no flags at all. So
    on a deployed server inlining cannot be turned off when it hurts (test 1, 2)."""
    from ops.backends import local
    from ops.backends.kubernetes import KubernetesBackend
    from ops.serving.server import parse_args

    monkeypatch.setenv("MODELGATE_BATCH_INLINE_US", "0")
    assert parse_args([]).batch_inline_us == 0
    assert "MODELGATE_BATCH_INLINE_US" in local.SERVER_ENV
    names = KubernetesBackend.PROJECT_SETTINGS["properties"]["env"]["propertyNames"]["enum"]
    assert "MODELGATE_BATCH_INLINE_US" in names


# -- 4. LOW: the token pool's lock is not renewed in a forked child --------------------------

def test_a_child_forked_while_another_thread_takes_a_token_can_still_take_one(monkeypatch):
    """``register_at_fork`` empties the pool in the child but keeps the lock: a fork while
    another thread is inside ``take()`` (e.g. the event loop issuing an id while the plan
    loader thread forks to load a native model, ops/artifacts.py) leaves the child's copy of
    the lock held by a thread that does not exist there, and its first prediction id hangs
    for ever. Before bbe0ddf, ``new_request_token`` took no lock."""
    from ops.serving import ids

    inside, release = threading.Event(), threading.Event()
    real = os.urandom
    holder = []

    def slow_urandom(n):  # the other thread is inside take(), reading the next block
        if threading.current_thread() in holder:
            inside.set()
            release.wait(10)
        return real(n)

    monkeypatch.setattr(ids.os, "urandom", slow_urandom)
    if hasattr(ids, "_tokens"):
        ids._tokens._reset()  # the next take() reads a block
    other = threading.Thread(target=ids.new_request_token)
    holder.append(other)
    other.start()
    assert inside.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: one id, or killed by the alarm
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(3)
            ok = len(ids.new_request_token()) == 32
            os._exit(0 if ok else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    release.set()
    other.join()
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not done:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child never got its token")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (
        "the forked child hung on the token pool's lock (killed by its alarm: "
        f"signal {os.WTERMSIG(status) if os.WIFSIGNALED(status) else None})")


# -- 5. LOW: the attribution cache key is not the headers' key ------------------------------

def test_cached_attribution_headers_are_those_of_the_plan_in_use():
    """The cache key holds the version as given (``spec.version``) but the headers hold
    ``str(version)``: 7 and 7.0 (a plan's ``version_id`` is not coerced to int) or 1 and True
    are one key and two answers. A plan rewritten under the same generation with
    ``"version_id": 7.0`` keeps answering ``x-model-version: 7``. Before bbe0ddf every answer
    was made from the variant in hand."""
    from ops.serving.answers import Attribution

    app = served(PerRowModel(0.0), None)
    assert run(answer_headers(app))[b"x-model-version"] == b"7"
    spec = Variant(name="v1", version_id=7.0, artifact_uri="file:///m/v1.skops",
                   sha256="1" * 64, weight=1.0, task="regression")
    plan = ServingPlan(ENDPOINT, (spec,), generation=3)
    variant = LoadedVariant(spec, PerRowModel(0.0), FEATURES, mode=NUMPY, derive_labels=False,
                            load_seconds=0.0, executor=None, batching=BatchingOptions())
    app.manager.state = ServingState(plan, {"v1": variant}, Router(ENDPOINT, plan.weights()))
    expected = dict(Attribution.of(app.manager.state, variant).headers())
    assert expected[b"x-model-version"] == b"7.0"
    assert run(answer_headers(app))[b"x-model-version"] == b"7.0"
