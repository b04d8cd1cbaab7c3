"""The local backend's model servers, for operators: list them, stop them, start them again
(an endpoint's server as ``environment/endpoint``, and each multi-model endpoint's as
``environment/mme-<name>``; ``project/`` in front where two projects' names are alike).

Model servers run in sessions of their own so they outlive the worker (and the portal) that
started them; ``manage.py model_servers`` is how an operator sees and stops them. Stopping
keeps each endpoint's plan: ``start`` (and ``make demo`` when it starts,
``deployments.restore_local_servers``) brings a server back on what its latest rollout left
it serving.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ops.backends.base import BackendError
from portal.releases import deployments, multimodel
from portal.releases.models import Deployment, MultiModelEndpoint

MULTIMODEL_PREFIX = "mme-"  # model names may not start with it: never a plan endpoint's


@dataclass(frozen=True)
class LocalServer:
    name: str  # as the operator names it (``_servers``)
    pid: int | None  # None: not running
    url: str
    generation: int | None
    variants: tuple[str, ...]  # "stable v2 90%" (a multi-model server: "churn v3")
    detail: str = ""
    multimodel: bool = False


Served = Deployment | MultiModelEndpoint  # a plan endpoint's latest rollout, or a catalog's


def _latest() -> list[Deployment]:
    """Each local endpoint's latest rollout (it built the endpoint's backend)."""
    latest: dict[tuple[int, str], Deployment] = {}
    for deployment in (Deployment.objects.filter(environment__backend="local")
                       .select_related("environment__project", "model").order_by("pk")):
        latest[(deployment.environment_id, deployment.endpoint)] = deployment
    return sorted(latest.values(), key=lambda d: (d.environment.name, d.endpoint))


def _multimodel_endpoints() -> list[MultiModelEndpoint]:
    """The local multi-model endpoints a catalog was applied to (they have a server)."""
    return list(MultiModelEndpoint.objects.filter(environment__backend="local", applied__gt=0,
                                                  port__isnull=False)
                .select_related("environment__project")
                .prefetch_related("members__model", "members__served_version")
                .order_by("environment__name", "name"))


def _short(item: Served) -> str:
    """``environment/endpoint``; a multi-model endpoint's ``environment/mme-<name>``, so it
    never takes the name of a model's endpoint."""
    if isinstance(item, MultiModelEndpoint):
        return f"{item.environment.name}/{MULTIMODEL_PREFIX}{item.name}"
    return f"{item.environment.name}/{item.endpoint}"


def _qualified(item: Served) -> str:
    return f"{item.environment.project.slug}/{_short(item)}"


def _servers() -> list[tuple[str, Served]]:
    """Every local server with its name: the short one, or ``project/environment/endpoint``
    where two projects' environments and endpoints are named alike."""
    items: list[Served] = [*_latest(), *_multimodel_endpoints()]
    shorts = Counter(_short(item) for item in items)
    return [(_short(item) if shorts[_short(item)] == 1 else _qualified(item), item)
            for item in items]


def _server(name: str, deployment: Deployment) -> LocalServer:
    endpoint = deployment.endpoint
    try:
        backend = deployments.backend_for(deployment)
        observed = backend.observe(endpoint)
    except BackendError as e:
        return LocalServer(name, None, "", None, (), detail=str(e))
    versions = {v.pk: v.number for v in deployment.model.versions.all().only("pk", "number")}
    variants = tuple(f"{v.name} v{versions.get(v.version_id, '?')} {round(v.weight * 100, 1):g}%"
                     for v in observed.variants)
    return LocalServer(name, backend.running(endpoint), backend.url(endpoint),
                       observed.generation, variants,
                       detail="" if observed.ready else observed.detail)


def _multimodel_server(name: str, endpoint: MultiModelEndpoint) -> LocalServer:
    """A multi-model server as the list shows it: its members and the version each is
    served at ("not served": its catalog listed it unready, or it was added since)."""
    try:
        servers = multimodel.local_servers(endpoint)
        pid, url = servers.running(endpoint.backend_endpoint), servers.url(
            endpoint.backend_endpoint)
    except BackendError as e:
        return LocalServer(name, None, "", endpoint.applied, (), detail=f"multi-model; {e}",
                           multimodel=True)
    members = tuple(f"{m.model.name} v{m.served_version.number}" if m.served_version
                    else f"{m.model.name} not served" for m in endpoint.members.all())
    return LocalServer(name, pid, url, endpoint.applied, members, detail="multi-model",
                       multimodel=True)


def local_servers() -> list[LocalServer]:
    return [_multimodel_server(name, item) if isinstance(item, MultiModelEndpoint)
            else _server(name, item) for name, item in _servers()]


def _named(names: list[str] | None) -> list[tuple[str, Served]]:
    """The servers named (as listed, or ``project/environment/endpoint``), or every one;
    unknown or ambiguous names refused before anything is done."""
    servers = _servers()
    if not names:
        return servers
    chosen, unknown = [], []
    for wanted in names:
        found = [(name, item) for name, item in servers
                 if wanted in (name, _short(item), _qualified(item))]
        if len(found) > 1:
            raise ValueError(f"{wanted} is in more than one project; name one of "
                             + ", ".join(name for name, _ in found))
        if not found:
            unknown.append(wanted)
        chosen.extend(found)
    if unknown:
        raise ValueError(f"no local endpoint named {', '.join(unknown)} (known: "
                         f"{', '.join(name for name, _ in servers) or 'none'})")
    return chosen


def _stop(item: Served) -> bool:
    if isinstance(item, MultiModelEndpoint):
        return multimodel.local_servers(item).stop(item.backend_endpoint)
    return deployments.backend_for(item).stop(item.endpoint)


def _start(item: Served) -> bool:
    if isinstance(item, MultiModelEndpoint):
        return multimodel.local_servers(item).restore(item.backend_endpoint)
    return deployments.backend_for(item).restore(item.endpoint)


def stop_local_servers(names: list[str] | None = None) -> list[str]:
    """Stop the named servers, or every one; the names of those stopped."""
    return [name for name, item in _named(names) if _stop(item)]


def start_local_servers(names: list[str] | None = None) -> list[str]:
    """Start again the named stopped servers, or every one, each on its latest plan (or
    catalog); the names of those started."""
    return [name for name, item in _named(names) if _start(item)]
