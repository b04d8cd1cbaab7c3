"""The local backend's model servers, for operators: list them, stop them, start them again.

Model servers run in sessions of their own so they outlive the worker (and the portal) that
started them; ``manage.py model_servers`` is how an operator sees and stops them. Stopping
keeps each endpoint's plan: ``start`` (and ``make demo`` when it starts,
``deployments.restore_local_servers``) brings a server back on what its latest rollout left
it serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from ops.backends.base import BackendError
from portal.releases import deployments
from portal.releases.models import Deployment


@dataclass(frozen=True)
class LocalServer:
    environment: str
    endpoint: str
    pid: int | None  # None: not running
    url: str
    generation: int | None
    variants: tuple[str, ...]  # "stable v2 90%", as people read them
    detail: str = ""

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


def local_servers() -> list[LocalServer]:
    return [_server(d) for d in _latest()]


def _named(names: list[str] | None) -> dict[str, Deployment]:
    """The endpoints named ("environment/endpoint"), or every one; unknown names refused
    before anything is done."""
    found = {f"{d.environment.name}/{d.endpoint}": d for d in _latest()}
    unknown = sorted(set(names or []) - set(found))
    if unknown:
        raise ValueError(f"no local endpoint named {', '.join(unknown)} (known: "
                         f"{', '.join(found) or 'none'})")
    return {name: found[name] for name in names} if names else found


def stop_local_servers(names: list[str] | None = None) -> list[str]:
    """Stop the named servers, or every one; the names of those stopped."""
    return [name for name, d in _named(names).items()
            if deployments.backend_for(d).stop(d.endpoint)]


def start_local_servers(names: list[str] | None = None) -> list[str]:
    """Start again the named stopped servers, or every one, each on its latest plan; the
    names of those started."""
    return [name for name, d in _named(names).items()
            if deployments.backend_for(d).restore(d.endpoint)]
