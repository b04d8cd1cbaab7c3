"""Retraining targets: start a training run somewhere else, with the evidence that asked for it.

A target is an orchestrator the operator connects (``MODELGATE_RETRAINING_TARGETS``): an
Airflow (a DAG run with ``conf``), Kubeflow Pipelines (a run of a pipeline version with
parameters), GitHub Actions (a ``workflow_dispatch`` with inputs), or a project's own
HMAC-signed webhook. Each is one module with a class implementing ``base.Target``;
``REGISTRY`` is the one list of kinds (the portal derives its choices and checks from it).
No Django here: the portal hands in plain dicts and gets ``RunStarted`` back, or a
``TargetUnreachable`` (retry later) or ``TargetRefused`` (retrying cannot help).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ops.retraining.base import (
    Parameter,
    RunRequest,
    RunStarted,
    Target,
    TargetError,
    TargetRefused,
    TargetUnreachable,
)

__all__ = ["Parameter", "REGISTRY", "RunRequest", "RunStarted", "Target", "TargetError",
           "TargetRefused", "TargetUnreachable", "choices", "target_class"]


@dataclass(frozen=True)
class Registered:
    kind: str  # stored in rules through the operator's targets: never rename one
    label: str
    target: str  # "module:Class", imported on first use

    def load(self) -> type[Target]:
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)


REGISTRY: dict[str, Registered] = {r.kind: r for r in (
    Registered("airflow", "Apache Airflow (DAG run)", "ops.retraining.airflow:AirflowTarget"),
    Registered("kubeflow", "Kubeflow Pipelines (run)", "ops.retraining.kubeflow:KubeflowTarget"),
    Registered("github", "GitHub Actions (workflow dispatch)",
               "ops.retraining.github:GitHubTarget"),
    Registered("webhook", "Signed webhook", "ops.retraining.webhook:WebhookTarget"),
)}


def choices() -> list[tuple[str, str]]:
    return [(r.kind, r.label) for r in REGISTRY.values()]


def target_class(kind: str) -> type[Target]:
    """The class of ``kind``; a ``TargetRefused`` listing the kinds when it is unknown."""
    if kind not in REGISTRY:
        raise TargetRefused(f"unknown retraining target kind {kind!r}; known: "
                            f"{', '.join(REGISTRY)}", code="unknown_kind")
    return REGISTRY[kind].load()
