"""Deployment backends, chosen by name and imported lazily.

Each backend converges an endpoint to a declarative ``ServingPlan`` (DESIGN.md §5). New
platforms are new backends; nothing else changes.
"""

from __future__ import annotations

import importlib

from ops.backends.base import Backend, BackendError, ObservedState, ObservedVariant

__all__ = ["Backend", "BackendError", "ObservedState", "ObservedVariant", "BACKENDS",
           "get_backend"]

BACKENDS = {
    "local": "ops.backends.local:LocalBackend",
    "kubernetes": "ops.backends.kubernetes:KubernetesBackend",
    "sagemaker": "ops.backends.sagemaker:SageMakerBackend",
}


def get_backend(kind: str, settings: dict) -> Backend:
    """Build the backend registered under ``kind`` with an environment's settings."""
    try:
        target = BACKENDS[kind]
    except KeyError:
        raise BackendError(f"unknown backend {kind!r}; valid backends: "
                           + ", ".join(sorted(BACKENDS))) from None
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(**settings)
