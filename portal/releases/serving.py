"""What an environment serves now, as its backend observes it.

The rollout history says what was released; only the backend knows what answers callers
(a canary at 50 % serves two versions, a stopped model server none). The environment page
and its API show this, so "serving now" never disagrees with the traffic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import Max

from ops.backends.base import ObservedState
from ops.redact import without_paths
from portal.registry.models import ModelVersion, RegisteredModel
from portal.releases import deployments
from portal.releases.models import Deployment, Environment

log = logging.getLogger(__name__)

UNREACHABLE = "the backend could not be reached: "


@dataclass(frozen=True)
class ServingVariant:
    """One variant of an endpoint: the version it runs and its share of the traffic."""

    name: str
    version_id: int
    version: ModelVersion | None  # None: a version of another model, or deleted
    weight: float  # share of the traffic, 0..1

    @property
    def percent(self) -> str:
        """The share as people read it: "50", "12.5"."""
        return f"{round(self.weight * 100, 1):g}"


@dataclass(frozen=True)
class ServingEndpoint:
    """One model's endpoint in an environment, as observed now."""

    model: RegisteredModel
    endpoint: str
    url: str | None
    exists: bool
    ready: bool
    generation: int | None
    variants: tuple[ServingVariant, ...]
    detail: str  # why it is not ready (empty when it is)
    rollout: Deployment | None  # the rollout under way on it, if any


def serving_now(environment: Environment) -> list[ServingEndpoint]:
    """Each model's endpoint in ``environment`` (the latest deployment's) as its backend
    observes it. A backend that cannot be reached, or a target that is misconfigured, gives
    an entry saying so rather than an error: the page that shows it must still answer."""
    latest_ids = (Deployment.objects.filter(environment=environment).order_by().values("model")
                  .annotate(last=Max("pk")).values("last"))
    latest = (Deployment.objects.filter(pk__in=latest_ids)
              .select_related("environment", "model__project", "candidate")
              .order_by("model__name"))
    return [_endpoint(deployment) for deployment in latest]


def _endpoint(deployment: Deployment) -> ServingEndpoint:
    rollout = deployment if deployment.status in deployments.ACTIVE else None
    try:
        observed = deployments.backend_for(deployment).observe(deployment.endpoint)
    except Exception as e:  # noqa: BLE001 - any failure of the backend is shown, not raised
        # BackendUnavailable, BackendError, and whatever a misconfigured target raises.
        log.warning("observing %s/%s failed: %s", deployment.environment.name,
                    deployment.endpoint, e)
        return ServingEndpoint(model=deployment.model, endpoint=deployment.endpoint, url=None,
                               exists=False, ready=False, generation=None, variants=(),
                               detail=UNREACHABLE + without_paths(str(e) or type(e).__name__),
                               rollout=rollout)
    return ServingEndpoint(
        model=deployment.model, endpoint=deployment.endpoint, url=observed.url,
        exists=observed.exists, ready=observed.exists and observed.ready,
        generation=observed.generation, variants=_variants(deployment.model, observed),
        detail="" if observed.ready else _why_not_ready(observed), rollout=rollout)


def _variants(model: RegisteredModel, observed: ObservedState) -> tuple[ServingVariant, ...]:
    # Only the model's own versions: a number shown is a version of this model.
    versions = ModelVersion.objects.select_related("model__project").in_bulk(
        [v.version_id for v in observed.variants])
    return tuple(
        ServingVariant(name=v.name, version_id=v.version_id, weight=v.weight,
                       version=versions[v.version_id]
                       if v.version_id in versions
                       and versions[v.version_id].model_id == model.pk else None)
        for v in sorted(observed.variants, key=lambda v: -v.weight))


def _why_not_ready(observed: ObservedState) -> str:
    if not observed.exists:
        return "nothing serves: the endpoint does not exist"
    return without_paths(observed.refused or observed.detail or "not ready")
