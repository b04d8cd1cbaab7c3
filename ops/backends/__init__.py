"""Deployment backends, chosen by name and imported lazily.

Each backend converges an endpoint to a declarative ``ServingPlan`` (DESIGN.md §5). New
platforms are new backends; nothing else changes.

``REGISTRY`` is the one list of backend kinds: the kind stored in an environment (and named
in an operator's targets), how people read it, and the class that implements it. Everything
that enumerates kinds derives from it: the portal's choices, the targets' check, the API's
enum. A new backend is a module under ``ops/backends/`` and its line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ops.backends.base import (
    Backend,
    BackendError,
    ObservedState,
    ObservedVariant,
    PlanConflict,
    StalePlan,
)

__all__ = ["Backend", "BackendError", "ObservedState", "ObservedVariant", "PlanConflict",
           "StalePlan", "BACKENDS", "REGISTRY", "Registered", "backend_class", "choices",
           "get_backend"]


@dataclass(frozen=True)
class Registered:
    kind: str  # stored in environments: never rename one
    label: str
    target: str  # "module:Class", imported on first use
    # How long a promoting rollout waits for the platform to serve its final plan before
    # it restores the stable: a model server loads in seconds, pods start in minutes, a
    # SageMaker endpoint update routinely takes 8-15 minutes and more.
    serve_timeout_seconds: float = 900.0

    def load(self) -> type[Backend]:
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)


REGISTRY: dict[str, Registered] = {r.kind: r for r in (
    Registered("local", "This machine (model-server processes)",
               "ops.backends.local:LocalBackend", serve_timeout_seconds=300.0),
    Registered("kubernetes", "Kubernetes", "ops.backends.kubernetes:KubernetesBackend",
               serve_timeout_seconds=900.0),
    Registered("sagemaker", "Amazon SageMaker", "ops.backends.sagemaker:SageMakerBackend",
               serve_timeout_seconds=3600.0),
)}

# kind -> "module:Class"
BACKENDS = {kind: registered.target for kind, registered in REGISTRY.items()}


def choices() -> list[tuple[str, str]]:
    """``(kind, label)`` of every backend, in the registry's order."""
    return [(r.kind, r.label) for r in REGISTRY.values()]


def backend_class(kind: str) -> type[Backend]:
    """The class registered under ``kind``; ``BackendError`` names the valid kinds."""
    try:
        registered = REGISTRY[kind]
    except KeyError:
        raise BackendError(f"unknown backend {kind!r}; valid backends: "
                           + ", ".join(sorted(REGISTRY))) from None
    return registered.load()


def get_backend(kind: str, settings: dict) -> Backend:
    """Build the backend registered under ``kind`` with an environment's settings."""
    return backend_class(kind)(**settings)
