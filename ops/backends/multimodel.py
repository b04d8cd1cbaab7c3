"""Multi-model endpoints on every backend (decision 68): one server process (or container)
serving a ``Catalog`` of models loaded on demand.

The contract mirrors ``Backend``'s: ``apply_catalog`` (fenced by the catalog's generation,
like every plan), ``observe_catalog``, ``delete_catalog``; each kind's implementation is
named in ``MULTIMODEL`` and imported on first use. The local one lives here: a
``python -m ops.serving --catalog`` process per endpoint, managed exactly as the local
backend manages plan servers (its own session, flock-fenced writes, owner mark, pid check).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ops.backends.base import BackendError, BackendUnavailable, PlanConflict, StalePlan
from ops.backends.local import LocalBackend
from ops.serving.multimodel import Catalog, CatalogError

MULTIMODEL = {
    "local": "ops.backends.multimodel:LocalMultiModel",
    "kubernetes": "ops.backends.kubernetes.multimodel:KubernetesMultiModel",
    "sagemaker": "ops.backends.sagemaker.multimodel:SageMakerMultiModel",
}


@dataclass(frozen=True)
class MultiModelState:
    """What the platform runs for a multi-model endpoint."""

    endpoint: str
    exists: bool
    ready: bool = False
    generation: int | None = None
    url: str | None = None
    detail: str = ""
    extra: dict = field(default_factory=dict)


class MultiModelBackend(ABC):
    @abstractmethod
    def apply_catalog(self, catalog: Catalog, *, wait: bool = True) -> MultiModelState:
        """Serve ``catalog`` (start the endpoint if needed). ``StalePlan`` when the endpoint
        records a newer generation, ``PlanConflict`` when it records this one with other
        content; the same catalog again changes nothing."""

    @abstractmethod
    def observe_catalog(self, endpoint: str) -> MultiModelState:
        """What runs for ``endpoint`` now (``exists=False`` if nothing)."""

    @abstractmethod
    def delete_catalog(self, endpoint: str) -> None:
        """Remove the endpoint; deleting twice is harmless."""


def catalog_digest(catalog: Catalog) -> str:
    return hashlib.sha256(catalog.to_json().encode()).hexdigest()[:16]


def check_catalog_generation(catalog: Catalog, recorded: int | None, digest: str | None,
                             where: str) -> None:
    """The generation fence of ``ops.backends.base.check_generation``, for catalogs."""
    if recorded is None or recorded < catalog.generation:
        return
    if recorded > catalog.generation:
        raise StalePlan(f"catalog generation {catalog.generation} of {catalog.endpoint} is "
                        f"older than generation {recorded}, which {where} already records; "
                        "not applied", catalog.generation, recorded)
    if digest is not None and digest != catalog_digest(catalog):
        raise PlanConflict(f"generation {catalog.generation} of {catalog.endpoint} was already "
                           f"applied as a different catalog ({where} records it)")


def get_multimodel_backend(kind: str, settings: dict) -> MultiModelBackend:
    """The multi-model implementation of backend ``kind`` built with ``settings``."""
    try:
        module_name, class_name = MULTIMODEL[kind].split(":")
    except KeyError:
        raise BackendError(f"backend {kind!r} has no multi-model endpoints; valid: "
                           + ", ".join(sorted(MULTIMODEL))) from None
    return getattr(importlib.import_module(module_name), class_name)(**settings)


class _CatalogServers(LocalBackend):
    """The local backend's process management, started on a catalog instead of a plan."""

    SERVED_FILE = "catalog.json"
    SERVED_FLAG = "--catalog"


class LocalMultiModel(MultiModelBackend):
    """A ``python -m ops.serving --catalog`` process on this machine per endpoint."""

    def __init__(self, **settings):
        self.servers = _CatalogServers(**settings)

    def url(self, endpoint: str) -> str:
        return self.servers.url(endpoint)

    def apply_catalog(self, catalog: Catalog, *, wait: bool = True) -> MultiModelState:
        servers, endpoint = self.servers, catalog.endpoint
        folder = servers._dir(endpoint)
        folder.mkdir(parents=True, exist_ok=True)
        servers._check_owner(endpoint)
        target = folder / "catalog.json"
        text = catalog.to_json()
        with servers._locked(endpoint):
            current = target.read_text() if target.exists() else None
            written = current != text
            if written:
                recorded = _parsed(current)
                check_catalog_generation(catalog, recorded.generation if recorded else None,
                                         catalog_digest(recorded) if recorded else None,
                                         "its catalog file")
                partial = target.with_name(f"catalog.json.{os.getpid()}.partial")
                partial.write_text(text)
                os.replace(partial, target)  # the server never reads half a catalog
            servers._serve(endpoint, reload=written)
        if not wait:
            return self.observe_catalog(endpoint)
        deadline = time.monotonic() + servers.ready_timeout
        observed = None
        while time.monotonic() < deadline:
            observed = self.observe_catalog(endpoint)
            if observed.ready and observed.generation == catalog.generation:
                return observed
            if (observed.generation or 0) > catalog.generation:
                return observed  # a newer catalog was applied meanwhile
            if servers._pid(endpoint) is None:
                log = folder / "server.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise BackendError(f"the multi-model server for {endpoint} exited:\n{tail}")
            time.sleep(0.1)
        raise BackendUnavailable(f"the multi-model server for {endpoint} did not serve "
                                 f"catalog {catalog.generation} within "
                                 f"{servers.ready_timeout:.0f}s "
                                 f"({observed.detail if observed else 'no answer'})")

    def observe_catalog(self, endpoint: str) -> MultiModelState:
        servers = self.servers
        if not (servers._dir(endpoint) / "catalog.json").exists():
            return MultiModelState(endpoint, exists=False)
        url = servers.url(endpoint)
        if servers._pid(endpoint) is None:
            return MultiModelState(endpoint, exists=True, url=url,
                                   detail="the model server is not running")
        status, health = servers._get(endpoint, "/v2/health/ready")
        if status != 200 or not isinstance(health, dict):
            detail = (health or {}).get("error") if isinstance(health, dict) else None
            return MultiModelState(endpoint, exists=True, url=url,
                                   detail=detail or "the model server is starting")
        return MultiModelState(endpoint, exists=True, ready=True, url=url,
                               generation=health.get("generation"),
                               extra={"last_error": health.get("last_error")})

    def delete_catalog(self, endpoint: str) -> None:
        self.servers.stop_and_forget(endpoint, "catalog.json")

    def restore_catalog(self, endpoint: str) -> bool:
        """Start the endpoint's server again on its last catalog when none runs (after a
        restart); True when one was started."""
        return self.servers.restore(endpoint)


def _parsed(text: str | None) -> Catalog | None:
    if text is None:
        return None
    try:
        return Catalog.from_json(text)
    except CatalogError:
        return None
