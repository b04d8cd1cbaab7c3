"""What runs where now: every endpoint the portal has deployed, with its variants' versions,
and every multi-model endpoint with its members' versions.

The latest rollout of each (environment, model) decides: its current plan (rebuilt from the
recorded state, as the orchestrator does) names the variants serving and their versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ops import rollout
from ops.exceptions import OpsError
from portal.monitoring.models import MonitorSettings
from portal.registry.models import ModelVersion, RegisteredModel
from portal.releases.models import (
    Deployment,
    EndpointSlot,
    Environment,
    MultiModelEndpoint,
    MultiModelMember,
)
from portal.releases.targets import local_host


@dataclass
class ServedEndpoint:
    environment: Environment
    model: RegisteredModel
    endpoint: str
    deployment: Deployment | None  # None: a multi-model member (ServedMultiModel.member)
    variants: dict[str, ModelVersion] = field(default_factory=dict)  # name -> version
    weights: dict[str, float] = field(default_factory=dict)
    address: str | None = None  # host:port a Prometheus can scrape (local backend)
    only_variant: str | None = None  # a multi-model member: its own series only

    @property
    def key(self) -> tuple[int, str]:
        return (self.environment.pk, self.endpoint)

    def settings(self) -> MonitorSettings:
        found = getattr(self.model, "monitor_settings", None)
        return found if found is not None else MonitorSettings(model=self.model)


def served_endpoints(environments=None) -> list[ServedEndpoint]:
    """Every endpoint serving something now (optionally only in ``environments``)."""
    from portal.releases.deployments import backend_for

    deployments = (Deployment.objects.select_related(
        "environment__project", "model__project", "model__monitor_settings")
        .order_by("environment_id", "model_id", "-created_at", "-pk"))
    if environments is not None:
        deployments = deployments.filter(environment__in=environments)
    latest: dict[tuple[int, int], Deployment] = {}
    for deployment in deployments:
        latest.setdefault((deployment.environment_id, deployment.model_id), deployment)
    plans = {}
    version_ids = set()
    for key, deployment in latest.items():
        try:
            spec = rollout.RolloutSpec.from_dict(deployment.spec)
            state = rollout.RolloutState.from_dict(deployment.state)
        except (KeyError, TypeError, ValueError):
            continue
        plan = rollout.current_plan(spec, state)
        if plan is None:
            continue
        plans[key] = plan
        version_ids.update(v.version_id for v in plan.variants)
    versions = ModelVersion.objects.select_related("dataset", "model").in_bulk(version_ids)
    # Local endpoints' ports in one query (drift and the Prometheus sync call this every
    # 30 s); the backend is built only for an endpoint with no port yet (it allocates one).
    ports = {(slot.environment_id, slot.model_id): slot.port for slot in
             EndpointSlot.objects.filter(environment_id__in={k[0] for k in plans})}
    served = []
    for key, plan in plans.items():
        deployment = latest[key]
        address = None
        if deployment.environment.backend == "local":
            try:
                port = ports.get(key)
                url = (f"http://{local_host(deployment.environment)}:{port}" if port
                       else backend_for(deployment).url(deployment.endpoint))
                address = urlsplit(url).netloc
            except (OpsError, ValueError):
                address = None
        served.append(ServedEndpoint(
            environment=deployment.environment, model=deployment.model,
            endpoint=deployment.endpoint, deployment=deployment,
            variants={v.name: versions[v.version_id] for v in plan.variants
                      if v.version_id in versions},
            weights=plan.weights(), address=address))
    return sorted(served, key=lambda s: (s.environment.project.slug, s.environment.name,
                                         s.endpoint))


@dataclass
class ServedMultiModel:
    """A multi-model endpoint the backend accepted a catalog for (decision 68), with each
    member's model and the version its server serves: the one its applied catalog holds
    (``MultiModelMember.served_version``; an alias moved since serves its old version until
    the new catalog is applied; None: that catalog listed it unready)."""

    environment: Environment
    endpoint: MultiModelEndpoint
    members: dict[str, tuple[RegisteredModel, ModelVersion | None]]  # name -> (model, version)
    address: str | None = None  # host:port a Prometheus can scrape (local backend)

    @property
    def name(self) -> str:
        """The endpoint as its series and drift windows name it (``endpoint`` label)."""
        return self.endpoint.backend_endpoint

    def member(self, name: str) -> ServedEndpoint | None:
        """Member ``name`` as one endpoint serving one variant (its model, under its name),
        for its live charts: its series are the endpoint's with that ``variant`` label. None
        when it is not a member or its catalog did not serve it."""
        model, version = self.members.get(name, (None, None))
        if version is None:
            return None
        return ServedEndpoint(self.environment, model, self.name, None, {name: version},
                              {name: 1.0}, self.address, only_variant=name)


def served_multimodel_endpoints(environments=None) -> list[ServedMultiModel]:
    """Every multi-model endpoint applied at least once (optionally only in
    ``environments``); two queries however many members."""
    endpoints = (MultiModelEndpoint.objects.filter(applied__gt=0)
                 .select_related("environment__project").order_by("pk"))
    if environments is not None:
        endpoints = endpoints.filter(environment__in=environments)
    endpoints = list(endpoints)
    members = list(MultiModelMember.objects.filter(endpoint__in=endpoints)
                   .select_related("model__monitor_settings", "served_version__dataset",
                                   "served_version__model"))
    by_endpoint: dict[int, dict] = {e.pk: {} for e in endpoints}
    for member in members:
        by_endpoint[member.endpoint_id][member.model.name] = (member.model,
                                                              member.served_version)
    served = []
    for endpoint in endpoints:
        environment = endpoint.environment
        address = None
        if environment.backend == "local" and endpoint.port:
            try:
                address = f"{local_host(environment)}:{endpoint.port}"
            except (OpsError, ValueError):
                address = None
        served.append(ServedMultiModel(environment, endpoint, by_endpoint[endpoint.pk],
                                       address))
    return sorted(served, key=lambda s: (s.environment.project.slug, s.environment.name,
                                         s.endpoint.name))
