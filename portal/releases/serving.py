"""What an environment serves now, as its backend observes it.

The rollout history says what was released; only the backend knows what answers callers
(a canary at 50 % serves two versions, a stopped model server none). The environment,
model and version pages and their API (``serving``) show this, so "serving now" never
disagrees with the traffic.

The cost is bounded by a time budget per page, not a cache: the backends of a page are
asked all at once (one thread each) and those that have not answered within
``OBSERVE_BUDGET_SECONDS`` are shown as unreachable, so a page with several environments
takes about as long as its slowest backend, and at most the budget. A cache would have
shown a person the state from before their own pause or rollback.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.db.models import Max

from ops.backends.base import ObservedState
from ops.redact import without_paths
from portal.prepared import Prepared
from portal.registry.models import ModelVersion, RegisteredModel
from portal.releases import deployments
from portal.releases.models import Deployment, Environment

log = logging.getLogger(__name__)

UNREACHABLE = "the backend could not be reached: "
OBSERVE_BUDGET_SECONDS = 3.0  # per page, for all its backends together


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

    environment: Environment
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
    latest = _latest(Deployment.objects.filter(environment=environment), "model")
    return observe_all(list(latest.order_by("model__name")))


def serving_model(model: RegisteredModel) -> list[ServingEndpoint]:
    """The model's endpoint in each environment of its project it was released to (the
    latest deployment there), by environment name, as the backends observe them."""
    latest = _latest_of_model.rows(model.pk, model.project_id)
    for deployment in latest:  # the model at hand: not joined again
        deployment.model = model
    return observe_all(latest)


@Prepared
def _latest_of_model(model_id: int, project_id: int):
    return (_latest(Deployment.objects.filter(model_id=model_id,
                                              environment__project_id=project_id),
                    "environment")
            .select_related(None).select_related("environment", "candidate")
            .only(*MODEL_ENDPOINT_COLUMNS).order_by("environment__name"))


def serving_version(version: ModelVersion) -> list[ServingEndpoint]:
    """The endpoints of the version's model that serve it now, with the others' variants
    too (its share is one of them); an endpoint whose backend could not be reached is kept,
    since it may serve the version, and says so."""
    return [endpoint for endpoint in serving_model(version.model)
            if endpoint.detail.startswith(UNREACHABLE)
            or any(v.version_id == version.pk for v in endpoint.variants)]


def by_environment(model: RegisteredModel) -> list[tuple[Environment, ServingEndpoint | None]]:
    """Every environment of the model's project with the model's endpoint there (None: never
    released there), for the model page."""
    endpoints = {e.environment.pk: e for e in serving_model(model)}
    environments = _environments_of.rows(model.project_id)
    for environment in environments:  # the model's project, at hand: no join to read it again
        environment.project = model.project
    return [(environment, endpoints.get(environment.pk)) for environment in environments]


@Prepared
def _environments_of(project_id: int):
    return Environment.objects.filter(project_id=project_id).only("name", "project").order_by(
        "name")


def _latest(deployments_, per: str):
    """The latest deployment of each ``per`` (model or environment) among ``deployments_``."""
    latest_ids = deployments_.order_by().values(per).annotate(last=Max("pk")).values("last")
    return (Deployment.objects.filter(pk__in=latest_ids)
            .select_related("environment", "model", "candidate").only(*ENDPOINT_COLUMNS))


# What an endpoint's backend is built from (``targets.backend_options``) and what the pages
# and the API show of it: of the rollout, a link and its candidate's number; not its spec
# (the baselines of every input), nor the candidate's schemas and figures. The fewer
# columns, the less Django compiles for every page that shows what serves.
ENDPOINT_COLUMNS = ("environment", "model", "candidate", "endpoint", "status",
                    "environment__project", "environment__name", "environment__backend",
                    "environment__target", "environment__settings", "model__project",
                    "model__name", "candidate__number")
MODEL_ENDPOINT_COLUMNS = tuple(c for c in ENDPOINT_COLUMNS if not c.startswith("model__"))


def observe_all(latest: list[Deployment]) -> list[ServingEndpoint]:
    """Each deployment's endpoint as its backend observes it, all asked at once and given
    ``OBSERVE_BUDGET_SECONDS`` together. The backends are built here (that reads the
    database); only ``observe``, which does not, runs in the threads."""
    outcomes: dict[int, ObservedState | BaseException] = {}
    backends = {}
    for deployment in latest:
        try:
            backends[deployment.pk] = deployments.backend_for(deployment)
        except Exception as e:  # noqa: BLE001 - a misconfigured target is shown, not raised
            outcomes[deployment.pk] = e
    if backends:
        pool = ThreadPoolExecutor(max_workers=len(backends), thread_name_prefix="observe")
        by_pk = {deployment.pk: deployment for deployment in latest}
        futures = {pk: pool.submit(backend.observe, by_pk[pk].endpoint)
                   for pk, backend in backends.items()}
        wait(futures.values(), timeout=OBSERVE_BUDGET_SECONDS)
        outcomes.update((pk, _outcome(future)) for pk, future in futures.items())
        # A backend still not answering keeps its thread until its client's own timeout;
        # the page does not wait for it.
        pool.shutdown(wait=False, cancel_futures=True)
    return [_endpoint(deployment, outcomes[deployment.pk]) for deployment in latest]


def _outcome(future) -> ObservedState | BaseException:
    if not future.done():
        return TimeoutError(f"no answer within {OBSERVE_BUDGET_SECONDS:g} s")
    return future.exception() or future.result()


def _endpoint(deployment: Deployment,
              observed: ObservedState | BaseException) -> ServingEndpoint:
    rollout = deployment if deployment.status in deployments.ACTIVE else None
    if isinstance(observed, BaseException):
        # BackendUnavailable, BackendError, a time-out, whatever a misconfigured target raises.
        log.warning("observing %s/%s failed: %s", deployment.environment.name,
                    deployment.endpoint, observed)
        return ServingEndpoint(
            environment=deployment.environment, model=deployment.model,
            endpoint=deployment.endpoint, url=None, exists=False, ready=False, generation=None,
            variants=(), rollout=rollout,
            detail=UNREACHABLE + without_paths(str(observed) or type(observed).__name__))
    return ServingEndpoint(
        environment=deployment.environment, model=deployment.model,
        endpoint=deployment.endpoint, url=observed.url, exists=observed.exists,
        ready=observed.exists and observed.ready, generation=observed.generation,
        variants=_variants(deployment.model, observed),
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
