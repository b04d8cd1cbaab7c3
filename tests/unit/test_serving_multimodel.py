"""ops.serving.multimodel: the LRU within a memory budget, single-flight loads under a race,
leases that keep a model in use from eviction, and the 404s naming the model."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from ops.plan import Variant
from ops.serving.exceptions import NotFound, Overloaded, RequestError
from ops.serving.multimodel import (
    Catalog,
    CatalogError,
    CatalogModel,
    ModelCache,
    estimate_loaded_bytes,
    loaded_size,
)
from tests.asyncio_thread import run_async

MB = 1 << 20


def entry(name: str, size: int = MB, sha: str = "0") -> CatalogModel:
    spec = Variant(name=name, version_id=1, artifact_uri=f"file:///m/{name}.skops",
                   sha256=sha * 64, weight=1.0)
    return CatalogModel(spec, size)


def catalog(*models: CatalogModel, budget: int = 3 * MB, **extra) -> Catalog:
    return Catalog("tenants", {m.name: m for m in models}, memory_budget=budget, **extra)


class Loader:
    """Records loads; ``gate`` (when set) holds every load until released."""

    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[str] = []
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, model: CatalogModel):
        with self.lock:
            self.calls.append(model.name)
        if self.gate is not None:
            assert self.gate.wait(5), "the test never released the load"
        return {"model": model.name}


def run(coroutine):
    return run_async(coroutine)


async def use(cache: ModelCache, name: str):
    lease = await cache.acquire(name)
    lease.release()
    return lease.model


def test_least_recently_used_model_is_evicted_to_fit_the_budget():
    loader = Loader()
    cache = ModelCache(catalog(*(entry(n) for n in "abcd")), loader)

    async def scenario():
        for name in "abc":
            await use(cache, name)
        await use(cache, "a")  # a is now the most recent: b is the least
        await use(cache, "d")
        return [n for n, _ in cache.loaded()]

    assert run(scenario()) == ["c", "a", "d"]
    assert cache.used_bytes == 3 * MB and cache.stats.evictions == 1
    assert loader.calls == ["a", "b", "c", "d"]  # a's second use was a hit


def test_concurrent_first_requests_for_a_cold_model_load_it_once():
    gate = threading.Event()
    loader = Loader(gate)
    cache = ModelCache(catalog(entry("a")), loader)

    async def scenario():
        requests = [asyncio.create_task(use(cache, "a")) for _ in range(25)]
        while not loader.calls:  # the load has started and is held
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)  # every request is now waiting on it
        gate.set()
        return await asyncio.gather(*requests)

    models = run(scenario())
    assert loader.calls == ["a"]
    assert all(m is models[0] for m in models)


def test_a_caller_going_away_does_not_cancel_the_load_for_the_others():
    gate = threading.Event()
    loader = Loader(gate)
    cache = ModelCache(catalog(entry("a")), loader)

    async def scenario():
        first = asyncio.create_task(use(cache, "a"))
        second = asyncio.create_task(use(cache, "a"))
        while not loader.calls:
            await asyncio.sleep(0.001)
        first.cancel()
        gate.set()
        return await second

    assert run(scenario()) == {"model": "a"}
    assert loader.calls == ["a"]


def test_a_model_in_use_is_never_evicted_and_the_load_is_refused_instead():
    loader = Loader()
    cache = ModelCache(catalog(entry("a", 2 * MB), entry("b", 2 * MB)), loader)

    async def scenario():
        held = await cache.acquire("a")
        with pytest.raises(Overloaded, match="held by models answering requests"):
            await cache.acquire("b")
        assert cache.is_loaded("a")
        held.release()
        await use(cache, "b")  # now a is idle and goes
        return [n for n, _ in cache.loaded()]

    assert run(scenario()) == ["b"]
    assert cache.stats.refused == 1


def test_a_failed_load_is_told_to_every_waiter_and_retried_by_the_next_request():
    attempts = []

    def flaky(model):
        attempts.append(model.name)
        time.sleep(0.01)
        if len(attempts) == 1:
            raise RuntimeError("storage hiccup")
        return "loaded"

    cache = ModelCache(catalog(entry("a")), flaky)

    async def scenario():
        first = await asyncio.gather(*(use(cache, "a") for _ in range(5)),
                                     return_exceptions=True)
        return first, await use(cache, "a")

    first, second = run(scenario())
    assert all(isinstance(e, RuntimeError) for e in first)
    assert second == "loaded" and attempts == ["a", "a"]
    assert cache.stats.load_failures == 1


def test_a_measured_size_larger_than_stated_is_what_the_budget_counts():
    cache = ModelCache(catalog(*(entry(n) for n in "abc")), Loader(),
                       measure=lambda model: 2 * MB)

    async def scenario():
        await use(cache, "a")
        await use(cache, "b")
        return [n for n, _ in cache.loaded()]

    assert run(scenario()) == ["b"]
    assert cache.size_of("b") == 2 * MB


def test_unknown_and_unready_models_are_404s_naming_them():
    cache = ModelCache(catalog(entry("a"), unready={"late": "version 3 is still validating"}),
                       Loader())
    with pytest.raises(NotFound, match="'ghost' is registered") as unknown:
        run(cache.acquire("ghost"))
    assert unknown.value.code == "model_not_found" and unknown.value.status == 404
    with pytest.raises(NotFound, match="'late' is not ready.*still validating") as unready:
        run(cache.acquire("late"))
    assert unready.value.code == "model_not_ready"


def test_a_model_removed_from_the_catalog_finishes_its_request_then_goes():
    cache = ModelCache(catalog(entry("a"), entry("b")), Loader())

    async def scenario():
        held = await cache.acquire("a")
        cache.replace_catalog(catalog(entry("b")))
        assert cache.is_loaded("a")  # still answering its request
        with pytest.raises(NotFound):
            await cache.acquire("a")
        held.release()
        return cache.is_loaded("a")

    assert run(scenario()) is False


def test_a_changed_model_is_loaded_again():
    loader = Loader()
    cache = ModelCache(catalog(entry("a")), loader)

    async def scenario():
        await use(cache, "a")
        cache.replace_catalog(catalog(entry("a", sha="1")))
        await use(cache, "a")

    run(scenario())
    assert loader.calls == ["a", "a"]


def test_a_catalog_model_larger_than_the_budget_is_refused():
    with pytest.raises(CatalogError, match="big do not fit the memory budget"):
        catalog(entry("big", 4 * MB))
    cache = ModelCache(catalog(entry("a")), Loader(), measure=lambda model: 5 * MB)
    with pytest.raises(RequestError, match="more than the endpoint's memory budget") as e:
        run(use(cache, "a"))
    assert e.value.status == 507


def test_catalog_round_trips_through_json():
    original = catalog(entry("a"), entry("b", 2 * MB), top_models=7, unready={"c": "why"})
    assert Catalog.from_json(original.to_json()) == original
    with pytest.raises(CatalogError):
        Catalog.from_json('{"endpoint": "x"}')


def test_loaded_size_counts_buffers_once_and_the_estimate_is_above_it():
    from sklearn.ensemble import RandomForestClassifier

    from ops.artifacts import dump_skops

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(
        X, X[:, 0] > 0)
    size = loaded_size(forest)
    trees = sum(t.tree_.__getstate__()["nodes"].nbytes for t in forest.estimators_)
    assert size > trees
    shared = np.zeros(MB // 8)
    assert loaded_size([shared, shared[10:], shared]) < MB + 4096
    assert estimate_loaded_bytes(len(dump_skops(forest))) > size
