"""Many models behind one endpoint: a catalog, loaded on demand, least recently used evicted
within a memory budget (decision 68).

A multi-model endpoint serves a *catalog* (``catalog.json``, written by the backend from the
portal's members): every model a request may name, each with its artifact, checksum, schema,
baseline and the memory it is accounted for. Nothing is loaded at start; the first request
naming a model loads it (checksum-verified, exactly as a plan's variant: ``load_variant``).

``ModelCache`` holds the loaded models:
- *single-flight*: concurrent first requests for one cold model share one load (a task of
  its own, so a caller that goes away does not cancel it for the others);
- *LRU within a budget*: before a load, idle models are evicted least recently used first
  until the newcomer fits; the accounted size of a model is the larger of what the catalog
  states (the portal's estimate) and what ``loaded_size`` measures once it is loaded;
- *leases*: a request holds its model from choice to answer; a model in use is never
  evicted, and when the budget is held by models in use the load is refused with a 503
  ``overloaded`` (retry) rather than going over the budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from ops.exceptions import PermanentError
from ops.plan import Variant
from ops.serving.exceptions import NotFound, Overloaded, RequestError

log = logging.getLogger("ops.serving")

DEFAULT_TOP_MODELS = 20
# The portal's stated estimate of a model's loaded size when nothing was measured: the
# artifact's bytes twice (a skops zip holds the arrays once, decompressed they are about the
# same; the load's own copies and the batcher's buffers about as much again) plus a fixed
# quarter MiB for the server's per-model objects (batcher, binner, counters).
ESTIMATE_FACTOR = 2
ESTIMATE_OVERHEAD = 256 * 1024


class CatalogError(PermanentError):
    code = "invalid_catalog"


def estimate_loaded_bytes(artifact_size: int) -> int:
    """The stated estimate of a model's memory once served (see ``ESTIMATE_FACTOR``)."""
    return int(artifact_size) * ESTIMATE_FACTOR + ESTIMATE_OVERHEAD


@dataclass(frozen=True)
class CatalogModel:
    """One model a request may name: what to load and the memory it is accounted for."""

    spec: Variant  # spec.name is the name requests use
    memory_bytes: int

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict:
        return {**self.spec.to_dict(), "memory_bytes": self.memory_bytes}


@dataclass(frozen=True)
class Catalog:
    """The desired state of a multi-model endpoint.

    ``unready`` names models that are members but cannot be served yet, with the reason a
    request for them is told; ``top_models`` is how many models keep their own metric label.
    """

    endpoint: str
    models: dict[str, CatalogModel]
    memory_budget: int
    generation: int = 1
    top_models: int = DEFAULT_TOP_MODELS
    unready: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.memory_budget <= 0:
            raise CatalogError("the memory budget must be positive")
        if self.top_models < 0:
            raise CatalogError("top_models cannot be negative")
        too_big = [m.name for m in self.models.values() if m.memory_bytes > self.memory_budget]
        if too_big:
            raise CatalogError(f"model(s) {', '.join(sorted(too_big))} do not fit the memory "
                               f"budget of {self.memory_budget} bytes")

    def to_json(self) -> str:
        return json.dumps({"endpoint": self.endpoint, "generation": self.generation,
                           "memory_budget": self.memory_budget, "top_models": self.top_models,
                           "unready": self.unready,
                           "models": [m.to_dict() for m in self.models.values()]},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Catalog:
        try:
            data = json.loads(text)
            fields = set(Variant.__dataclass_fields__)
            models = {}
            for entry in data["models"]:
                spec = Variant(**{k: v for k, v in entry.items() if k in fields})
                if spec.name in models:
                    raise CatalogError(f"the catalog names {spec.name!r} twice")
                models[spec.name] = CatalogModel(spec, int(entry["memory_bytes"]))
            return cls(endpoint=data["endpoint"], models=models,
                       memory_budget=int(data["memory_budget"]),
                       generation=int(data.get("generation", 1)),
                       top_models=int(data.get("top_models", DEFAULT_TOP_MODELS)),
                       unready=dict(data.get("unready") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise CatalogError(f"malformed catalog: {e}") from e


def loaded_size(obj) -> int:
    """Bytes a loaded model holds: numpy buffers plus Python objects, walked deeply.

    Objects without a ``__dict__`` (scikit-learn's ``Tree``) are walked through their
    ``__getstate__``; a buffer shared by two arrays is counted once.
    """
    seen: set[int] = set()
    stack = [obj]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            total += _buffer_bytes(item, seen)
            if item.dtype == object:
                stack.extend(item.ravel().tolist())
            continue
        total += sys.getsizeof(item, 64)
        stack.extend(_children(item))
    return total


def _buffer_bytes(array: np.ndarray, seen: set[int]) -> int:
    owner = array
    while isinstance(owner.base, np.ndarray):  # a view: count the buffer's owner once
        owner = owner.base
    if owner is not array and id(owner) in seen:
        return 0
    seen.add(id(owner))
    return owner.nbytes


def _children(item) -> list:
    if isinstance(item, (str, bytes, int, float, bool, type(None), type)):
        return []
    if isinstance(item, dict):
        return [*item.keys(), *item.values()]
    if isinstance(item, (list, tuple, set, frozenset)):
        return list(item)
    if hasattr(item, "__dict__"):
        return [vars(item)]
    try:
        return [item.__getstate__()]
    except Exception:  # noqa: BLE001 - an opaque object counts its own size only
        return []


@dataclass
class _Entry:
    model: CatalogModel
    loaded: object  # a LoadedVariant (or what the loader returns)
    size: int
    in_use: int = 0
    retired: bool = False  # gone from the catalog or changed: dropped once idle


@dataclass
class CacheStats:
    loads: int = 0
    evictions: int = 0
    load_failures: int = 0
    refused: int = 0
    load_seconds: float = 0.0


class Lease:
    """A request's hold on a loaded model; ``release`` exactly once (``async with``)."""

    __slots__ = ("_cache", "_entry", "model")

    def __init__(self, cache: ModelCache, entry: _Entry):
        self._cache = cache
        self._entry = entry
        self.model = entry.loaded

    def release(self) -> None:
        if self._entry is not None:
            self._cache._release(self._entry)
            self._entry = None

    async def __aenter__(self):
        return self.model

    async def __aexit__(self, *exc):
        self.release()


class ModelCache:
    """Loaded models of one catalog, least recently used first (see the module docstring).

    Runs on one event loop: every bookkeeping step happens between awaits, so no lock is
    needed; the load itself (``loader(model)``) runs on ``load_executor`` (a thread).
    """

    def __init__(self, catalog: Catalog, loader: Callable[[CatalogModel], object], *,
                 measure: Callable[[object], int] | None = None,
                 on_evict: Callable[[str], None] | None = None,
                 load_executor: Executor | None = None):
        self.catalog = catalog
        self.loader = loader
        # One thread loads (the server's): loads share one malloc arena instead of growing
        # one per thread, and two cold models never load at once over the budget's room.
        self.load_executor = load_executor
        self.measure = measure
        self.on_evict = on_evict
        self.stats = CacheStats()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recent first
        self._loading: dict[str, asyncio.Task] = {}
        self._reserved = 0  # bytes promised to loads under way
        self._replaced: list[_Entry] = []  # old versions still answering requests

    # -- reading ----------------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return (sum(e.size for e in self._entries.values())
                + sum(e.size for e in self._replaced))

    def loaded(self) -> list[tuple[str, object]]:
        """(name, loaded model) of every model in memory, least recent first."""
        return [(name, e.loaded) for name, e in self._entries.items()]

    def is_loaded(self, name: str) -> bool:
        return name in self._entries

    def size_of(self, name: str) -> int | None:
        entry = self._entries.get(name)
        return entry.size if entry is not None else None

    def lookup(self, name: str) -> CatalogModel:
        """The catalog's model named ``name``, or a 404 naming it (and why, when known)."""
        model = self.catalog.models.get(name)
        if model is not None:
            return model
        reason = self.catalog.unready.get(name)
        if reason is not None:
            raise NotFound(f"model {name!r} is not ready on endpoint {self.catalog.endpoint!r}: "
                           f"{reason}", code="model_not_ready")
        raise NotFound(f"no model named {name!r} is registered on multi-model endpoint "
                       f"{self.catalog.endpoint!r}", code="model_not_found")

    # -- leasing ----------------------------------------------------------------------------

    async def acquire(self, name: str) -> Lease:
        """A lease on the loaded model ``name``, loading it first when cold."""
        while True:
            model = self.lookup(name)
            entry = self._entries.get(name)
            if entry is not None and not entry.retired:
                self._entries.move_to_end(name)
                entry.in_use += 1
                return Lease(self, entry)
            task = self._loading.get(name)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._load(model))
                self._loading[name] = task
            # Shielded: a caller that goes away must not cancel the load the others await.
            # After it, loop: the loaded entry is leased on the next pass, in the same step.
            await asyncio.shield(task)

    def _release(self, entry: _Entry) -> None:
        entry.in_use -= 1
        if entry.in_use == 0 and entry.retired:
            if entry in self._replaced:
                self._replaced.remove(entry)
            self._drop(entry.model.name, entry)

    # -- loading and eviction ---------------------------------------------------------------

    async def _load(self, model: CatalogModel) -> None:
        name = model.name
        try:
            stale = self._entries.get(name)
            if stale is not None and stale.in_use == 0:  # retired and idle: replace it
                self._drop(name, stale)
            self._make_room(model.memory_bytes)
            self._reserved += model.memory_bytes
            started = time.perf_counter()
            try:
                loaded = await asyncio.get_running_loop().run_in_executor(
                    self.load_executor, self.loader, model)
            except Exception:
                self.stats.load_failures += 1
                raise
            finally:
                self._reserved -= model.memory_bytes
            measured = self.measure(loaded) if self.measure is not None else 0
            size = max(model.memory_bytes, measured)
            self.stats.loads += 1
            self.stats.load_seconds += time.perf_counter() - started
            if self.catalog.models.get(name) != model:
                return  # the catalog changed during the load; the next request loads anew
            if size > model.memory_bytes:
                log.warning("model %s measures %d bytes loaded, more than the %d it is "
                            "accounted for", name, size, model.memory_bytes)
                self._make_room(size, keep=name)
            old = self._entries.get(name)
            if old is not None and old.in_use:  # a request still answers on it: still counted
                self._replaced.append(old)
            self._entries[name] = _Entry(model, loaded, size)
            self._entries.move_to_end(name)
        finally:
            self._loading.pop(name, None)

    def _make_room(self, size: int, keep: str | None = None) -> None:
        """Evict idle models, least recent first, until ``size`` more bytes fit."""
        budget = self.catalog.memory_budget
        if size > budget:
            raise RequestError(f"model needs {size} bytes, more than the endpoint's memory "
                               f"budget of {budget}", code="over_budget", status=507)
        while self.used_bytes + self._reserved + size > budget:
            victim = next((n for n, e in self._entries.items()
                           if e.in_use == 0 and n != keep), None)
            if victim is None:
                self.stats.refused += 1
                raise Overloaded(f"the memory budget of {budget} bytes is held by models "
                                 "answering requests; retry shortly")
            self._drop(victim, self._entries[victim])

    def _drop(self, name: str, entry: _Entry) -> None:
        if self._entries.get(name) is entry:
            del self._entries[name]
            self.stats.evictions += 1
            if self.on_evict is not None:
                self.on_evict(name)

    # -- catalog changes --------------------------------------------------------------------

    def replace_catalog(self, catalog: Catalog) -> None:
        """Serve ``catalog`` from now on: models removed or changed are dropped once idle
        (a request holding one finishes on it); unchanged ones stay loaded."""
        self.catalog = catalog
        for name, entry in list(self._entries.items()):
            if catalog.models.get(name) != entry.model:
                entry.retired = True
                if entry.in_use == 0:
                    self._drop(name, entry)
        if self.used_bytes > catalog.memory_budget:  # a smaller budget
            try:
                self._make_room(0)
            except Overloaded:
                pass  # held by requests: the next loads make room once they release
