"""The local backend's model servers, for operators: list them, stop them, start them again
(an endpoint's server, and each multi-model endpoint's).

Model servers run in sessions of their own so they outlive the worker (and the portal) that
started them; ``manage.py model_servers`` is how an operator sees and stops them. Stopping
keeps each endpoint's plan: ``start`` (and ``make demo`` when it starts,
``deployments.restore_local_servers``) brings a server back on what its latest rollout left
it serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from ops.backends.base import BackendError
from portal.releases import deployments, multimodel
from portal.releases.models import Deployment, MultiModelEndpoint


@dataclass(frozen=True)
class LocalServer:
    environment: str
    endpoint: str
    pid: int | None  # None: not running
    url: str
    generation: int | None
    variants: tuple[str, ...]  # "stable v2 90%" (a multi-model server: "churn v3")
    detail: str = ""
    multimodel: bool = False

    @property
    def name(self) -> str:
        return f"{self.environment}/{self.endpoint}"


def _latest() -> list[Deployment]:
    """Each local endpoint's latest rollout (it built the endpoint's backend)."""
    latest: dict[tuple[int, str], Deployment] = {}
    for deployment in (Deployment.objects.filter(environment__backend="local")
                       .select_related("environment", "model").order_by("pk")):
        latest[(deployment.environment_id, deployment.endpoint)] = deployment
    return sorted(latest.values(), key=lambda d: (d.environment.name, d.endpoint))


def _server(deployment: Deployment) -> LocalServer:
    name, endpoint = deployment.environment.name, deployment.endpoint
    try:
        backend = deployments.backend_for(deployment)
        observed = backend.observe(endpoint)
    except BackendError as e:
        return LocalServer(name, endpoint, None, "", None, (), detail=str(e))
    versions = {v.pk: v.number for v in deployment.model.versions.all().only("pk", "number")}
    variants = tuple(f"{v.name} v{versions.get(v.version_id, '?')} {round(v.weight * 100, 1):g}%"
                     for v in observed.variants)
    return LocalServer(name, endpoint, backend.running(endpoint), backend.url(endpoint),
                       observed.generation, variants,
                       detail="" if observed.ready else observed.detail)


def _multimodel_endpoints() -> list[MultiModelEndpoint]:
    """The local multi-model endpoints a catalog was applied to (they have a server)."""
    return list(MultiModelEndpoint.objects.filter(environment__backend="local", applied__gt=0,
                                                  port__isnull=False)
                .select_related("environment")
                .prefetch_related("members__model", "members__served_version")
                .order_by("environment__name", "name"))


def _multimodel_server(endpoint: MultiModelEndpoint) -> LocalServer:
    """A multi-model server as the list shows it: its members and the version each is
    served at ("not served": its catalog listed it unready, or it was added since)."""
    name = endpoint.environment.name
    try:
        servers = multimodel.local_servers(endpoint)
        pid, url = servers.running(endpoint.backend_endpoint), servers.url(
            endpoint.backend_endpoint)
    except BackendError as e:
        return LocalServer(name, endpoint.name, None, "", endpoint.applied, (),
                           detail=f"multi-model; {e}", multimodel=True)
    members = tuple(f"{m.model.name} v{m.served_version.number}" if m.served_version
                    else f"{m.model.name} not served" for m in endpoint.members.all())
    return LocalServer(name, endpoint.name, pid, url, endpoint.applied, members,
                       detail="multi-model", multimodel=True)


def local_servers() -> list[LocalServer]:
    return ([_server(d) for d in _latest()]
            + [_multimodel_server(e) for e in _multimodel_endpoints()])


def _named(names: list[str] | None) -> dict[str, Deployment | MultiModelEndpoint]:
    """The endpoints named ("environment/endpoint"), or every one; unknown names refused
    before anything is done."""
    found: dict[str, Deployment | MultiModelEndpoint] = {
        f"{d.environment.name}/{d.endpoint}": d for d in _latest()}
    for endpoint in _multimodel_endpoints():  # a release's endpoint keeps its name
        found.setdefault(f"{endpoint.environment.name}/{endpoint.name}", endpoint)
    unknown = sorted(set(names or []) - set(found))
    if unknown:
        raise ValueError(f"no local endpoint named {', '.join(unknown)} (known: "
                         f"{', '.join(found) or 'none'})")
    return {name: found[name] for name in names} if names else found


def _stop(item: Deployment | MultiModelEndpoint) -> bool:
    if isinstance(item, MultiModelEndpoint):
        return multimodel.local_servers(item).stop(item.backend_endpoint)
    return deployments.backend_for(item).stop(item.endpoint)


def _start(item: Deployment | MultiModelEndpoint) -> bool:
    if isinstance(item, MultiModelEndpoint):
        return multimodel.local_servers(item).restore(item.backend_endpoint)
    return deployments.backend_for(item).restore(item.endpoint)


def stop_local_servers(names: list[str] | None = None) -> list[str]:
    """Stop the named servers, or every one; the names of those stopped."""
    return [name for name, item in _named(names).items() if _stop(item)]


def start_local_servers(names: list[str] | None = None) -> list[str]:
    """Start again the named stopped servers, or every one, each on its latest plan (or
    catalog); the names of those started."""
    return [name for name, item in _named(names).items() if _start(item)]
