"""Multi-model endpoints (decision 68): which registered models an environment's multi-model
server serves, changed by owners and audited, and applied by a worker as a ``Catalog``.

Every change bumps the endpoint's ``generation`` under a row lock on the endpoint (two
owners adding at once cannot both write the same generation, and the catalog a worker
applies is fenced by it, decision 51). A model is refused when its stated estimate
(``ops.serving.multimodel.estimate_loaded_bytes``) exceeds the endpoint's whole budget: the
server could never hold it.

A member following an alias serves where it points when the catalog is built; a move of the
alias (or its deletion) re-applies, as a new generation, every endpoint with a member
following it (``follow_alias``, in the move's transaction). ``restore_servers`` starts the
local servers again after a restart, on the catalog each was last given.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.db.models import F

from ops.backends.base import BackendError, BackendUnavailable, StalePlan
from ops.backends.multimodel import get_multimodel_backend
from ops.redact import without_paths
from ops.serving.multimodel import Catalog, CatalogModel, estimate_loaded_bytes
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import Conflict, NotFound, ValidationFailed
from portal.queue import enqueue
from portal.registry.choices import VersionStatus
from portal.registry.models import Alias, ModelVersion, RegisteredModel, name_validator
from portal.registry.services.archive import lock_open, refuse_archived
from portal.releases import targets
from portal.releases.models import Environment, MultiModelEndpoint, MultiModelMember
from portal.releases.specs import variant_of

log = logging.getLogger(__name__)
APPLY_TASK = "workers.releases.apply_multimodel_endpoint"
MAX_TOP_MODELS = 100
RETRY_SECONDS = 60


def create_endpoint(user, environment: Environment, *, name: str, memory_budget_mb: int,
                    top_models: int = 20) -> MultiModelEndpoint:
    require_role(user, environment.project, Role.OWNER, "create multi-model endpoints")
    _check_name(name)
    _check_settings(memory_budget_mb, top_models)
    with transaction.atomic():
        lock_open(environment)
        try:
            with transaction.atomic():
                endpoint = MultiModelEndpoint.objects.create(
                    environment=environment, name=name, memory_budget_mb=memory_budget_mb,
                    top_models=top_models, created_by=user)
        except IntegrityError:
            raise Conflict(f"environment {environment.name} already has a multi-model "
                           f"endpoint named {name}", code="duplicate", field="name") from None
        audit.record(user, "multimodel.create", endpoint, project_id=environment.project_id,
                     changes={"memory_budget_mb": memory_budget_mb, "top_models": top_models})
        enqueue(APPLY_TASK, endpoint.pk)
    return endpoint


def add_member(user, endpoint: MultiModelEndpoint, model: RegisteredModel, *,
               alias: str = "", version: ModelVersion | None = None) -> MultiModelMember:
    """Serve ``model`` (its ``alias``, followed, or a pinned ``version``) on ``endpoint``."""
    project = endpoint.environment.project
    require_role(user, project, Role.OWNER, "change multi-model endpoints")
    if model.project_id != project.pk:
        raise ValidationFailed("the model belongs to another project", field="model")
    refuse_archived(model, field="model")
    if bool(alias) == (version is not None):
        raise ValidationFailed("name either an alias or a version", field="alias")
    if version is not None and version.model_id != model.pk:
        raise ValidationFailed(f"version {version.pk} is not a version of {model.name}",
                               field="version")
    with transaction.atomic():
        if alias:
            # Alias first, as a move takes it (``follow_alias``): a move racing this add
            # either commits before (the catalog reads its version) or waits and then sees
            # this member, and re-applies the endpoint. Resolved under that lock, so the
            # version checked against the budget and recorded is the one it points at.
            Alias.objects.select_for_update().filter(model=model, name=alias).exists()
        resolved = version or _alias_version(model, alias)
        size = estimate_loaded_bytes(resolved.artifact_size)
        locked = _locked(endpoint)
        if size > locked.memory_budget:
            raise ValidationFailed(
                f"{model.name} v{resolved.number} needs about {_mib(size)} MiB loaded "
                f"(twice its {_mib(resolved.artifact_size)} MiB artifact plus 0.25 MiB); "
                f"endpoint {locked.name}'s whole memory budget is {locked.memory_budget_mb} MiB",
                code="over_budget", field="model")
        try:
            with transaction.atomic():
                member = MultiModelMember.objects.create(
                    endpoint=locked, model=model, alias=alias, version=version,
                    served_version=resolved, memory_bytes=size, added_by=user)
        except IntegrityError:
            raise Conflict(f"{model.name} is already served by {locked.name}",
                           code="duplicate", field="model") from None
        _bump(locked)
        audit.record(user, "multimodel.member_add", locked, project_id=project.pk,
                     changes={"model": model.name, "alias": alias,
                              "version": version.number if version else None,
                              "memory_bytes": size, "generation": locked.generation})
        enqueue(APPLY_TASK, locked.pk)
    return member


def remove_member(user, endpoint: MultiModelEndpoint, member_id: int) -> None:
    project = endpoint.environment.project
    require_role(user, project, Role.OWNER, "change multi-model endpoints")
    with transaction.atomic():
        locked = _locked(endpoint)
        member = MultiModelMember.objects.filter(endpoint=locked, pk=member_id).select_related(
            "model").first()
        if member is None:
            raise NotFound(f"endpoint {locked.name} has no member {member_id}")
        member.delete()
        _bump(locked)
        audit.record(user, "multimodel.member_remove", locked, project_id=project.pk,
                     changes={"model": member.model.name, "generation": locked.generation})
        enqueue(APPLY_TASK, locked.pk)


def reapply(user, endpoint: MultiModelEndpoint) -> MultiModelEndpoint:
    """Apply again as a new generation: aliases that moved since reach the server."""
    require_role(user, endpoint.environment.project, Role.OWNER, "apply multi-model endpoints")
    with transaction.atomic():
        locked = _locked(endpoint)
        _bump(locked)
        audit.record(user, "multimodel.apply", locked, project_id=locked.environment.project_id,
                     changes={"generation": locked.generation})
        enqueue(APPLY_TASK, locked.pk)
    return locked


def follow_alias(user, model_id: int, alias: str, version: ModelVersion | None) -> list[int]:
    """Alias ``alias`` of model ``model_id`` moved to ``version`` (None: deleted): every
    endpoint with a member following it gets a new generation and its apply queued, audited
    as ``multimodel.alias_moved``; returns their ids.

    Called inside the move's transaction, which holds the alias's row lock (the registry's
    ``alias_moved`` signal), so the move and the new generations commit together: a catalog
    built before holds the old version under an older generation, one built after holds
    the new one (the worker builds it under the endpoint's lock, which this takes)."""
    followers = (MultiModelMember.objects.filter(model_id=model_id, alias=alias)
                 .values_list("endpoint_id", flat=True))
    # In id order: two moves re-applying the same endpoints take their locks alike. The
    # endpoints' rows only (``of``): locking the joined environments too, a move held an
    # endpoint and waited for its environment while ``add_member`` (``_locked``: environment,
    # then endpoint) held the environment and waited for the endpoint, a deadlock.
    endpoints = list(MultiModelEndpoint.objects.select_for_update(of=("self",))
                     .filter(pk__in=followers).select_related("environment").order_by("pk"))
    model_name = RegisteredModel.objects.values_list("name", flat=True).get(pk=model_id) \
        if endpoints else ""
    for endpoint in endpoints:
        _bump(endpoint)
        audit.record(user, "multimodel.alias_moved", endpoint,
                     project_id=endpoint.environment.project_id,
                     changes={"model": model_name, "alias": alias,
                              "version": version.number if version else None,
                              "generation": endpoint.generation})
        enqueue(APPLY_TASK, endpoint.pk)
    return [endpoint.pk for endpoint in endpoints]


def on_alias_moved(sender, alias, version, user, **kwargs) -> None:
    """The registry's ``alias_moved``, received (connected in ``ReleasesConfig.ready``)."""
    follow_alias(user, alias.model_id, alias.name, version)


# -- the catalog and its apply (worker) -----------------------------------------------------

def build_catalog(endpoint: MultiModelEndpoint) -> Catalog:
    """The catalog of ``endpoint``'s generation: ready members, and why the others are not.

    Read under the endpoint's row lock: a member added meanwhile would otherwise be applied
    under the generation before it, and that generation's own catalog would then conflict."""
    with transaction.atomic():
        endpoint = MultiModelEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        return _catalog_of(endpoint)


def _catalog_of(endpoint: MultiModelEndpoint) -> Catalog:
    models, unready = {}, {}
    members = endpoint.members.select_related("model", "version", "version__dataset")
    for member in members:
        name = member.model.name
        version = member.version or _alias_version(member.model, member.alias, missing=None)
        if version is None:
            unready[name] = f"its alias {member.alias!r} points at no version"
        elif version.status != VersionStatus.READY:
            unready[name] = f"version {version.number} is {version.get_status_display().lower()}"
        elif (size := max(member.memory_bytes, estimate_loaded_bytes(version.artifact_size))) \
                > endpoint.memory_budget:  # an alias moved to a version too big for the budget
            unready[name] = (f"version {version.number} needs about {_mib(size)} MiB loaded, "
                             f"more than the endpoint's budget of {endpoint.memory_budget_mb} MiB")
        else:
            models[name] = CatalogModel(variant_of(version, name), size)
    return Catalog(endpoint.backend_endpoint, models, memory_budget=endpoint.memory_budget,
                   generation=endpoint.generation, top_models=endpoint.top_models,
                   unready=unready)


def apply_endpoint(endpoint_id: int) -> str:
    """Apply the endpoint's current catalog; returns what happened (also stored)."""
    endpoint = MultiModelEndpoint.objects.select_related("environment").get(pk=endpoint_id)
    catalog = build_catalog(endpoint)
    rows = MultiModelEndpoint.objects.filter(pk=endpoint.pk)
    try:
        backend = get_multimodel_backend(endpoint.environment.backend, _options(endpoint))
        state = backend.apply_catalog(catalog, wait=False)
    except StalePlan as e:
        return f"superseded: {e}"  # a newer generation was applied: it stands
    except BackendUnavailable as e:
        # Tried again later, as a rollout's delayed apply is; the newest generation then.
        detail = f"the backend could not be reached ({without_paths(str(e))}); retried in " \
                 f"{RETRY_SECONDS} s"
        rows.filter(applied__lt=catalog.generation).update(status_detail=detail)
        enqueue(APPLY_TASK, endpoint.pk, countdown=RETRY_SECONDS)
        return detail
    except BackendError as e:
        detail = f"refused: {without_paths(str(e))}"
        rows.update(status_detail=detail)
        return detail
    detail = f"generation {catalog.generation} applied; {state.detail or 'serving'}"
    # Only forward: a slow worker's older generation never overwrites a newer one's record
    # (the row stays locked to the commit: a newer apply's record waits and comes after).
    with transaction.atomic():
        if rows.filter(applied__lt=catalog.generation).update(applied=catalog.generation,
                                                              status_detail=detail):
            record_served(endpoint, catalog)
    return detail


def record_served(endpoint: MultiModelEndpoint, catalog: Catalog) -> None:
    """Each member's ``served_version``: what the applied ``catalog`` holds for it (None:
    not in it, unready or added since). Drift is judged against it (decision 68)."""
    members = list(MultiModelMember.objects.filter(endpoint=endpoint).select_related("model"))
    for member in members:
        held = catalog.models.get(member.model.name)
        member.served_version_id = held.spec.version_id if held else None
    MultiModelMember.objects.bulk_update(members, ["served_version"], batch_size=500)


def restore_servers() -> list[str]:
    """Start again the local multi-model servers that have a catalog but no running server
    (after a restart of the machine or of the demo), each on its last catalog; returns
    "environment/name (multi-model)" for each started."""
    started = []
    for endpoint in (MultiModelEndpoint.objects.filter(environment__backend="local",
                                                       applied__gt=0, port__isnull=False)
                     .select_related("environment").order_by("pk")):
        try:
            backend = get_multimodel_backend("local", _options(endpoint))
            if backend.restore_catalog(endpoint.backend_endpoint):
                started.append(f"{endpoint.environment.name}/{endpoint.name} (multi-model)")
        except BackendError as e:  # e.g. its port is taken by another program now
            log.warning("multi-model server %s not started again: %s", endpoint,
                        without_paths(str(e)))
    return started


def local_servers(endpoint: MultiModelEndpoint):
    """The local backend's process management of ``endpoint``'s server (list, stop, start:
    ``manage.py model_servers``)."""
    return get_multimodel_backend("local", _options(endpoint)).servers


def _options(endpoint: MultiModelEndpoint) -> dict:
    environment = endpoint.environment
    target = targets._target_of(environment)
    options = {**target.options, **targets.safe_settings(target, environment.settings)}
    options.update(targets.portal_owned(environment, target))
    if target.backend == "local":
        from django.conf import settings

        options["state_dir"] = str(settings.MODELGATE_SERVING_DIR / f"env-{environment.pk}")
        options["ports"] = {endpoint.backend_endpoint: _port(endpoint, target)}
    return options


def _port(endpoint: MultiModelEndpoint, target) -> int:
    """The endpoint's port, allocated once from the target's range (the unique column
    settles two workers racing; the plan endpoints' slots are skipped)."""
    from portal.releases.models import EndpointSlot

    if endpoint.port:
        return endpoint.port
    low, high = target.ports
    taken = (set(EndpointSlot.objects.values_list("port", flat=True))
             | set(MultiModelEndpoint.objects.exclude(port=None).values_list("port", flat=True)))
    host = target.options.get("host", "127.0.0.1")
    for port in range(low, high + 1):
        if port in taken or not targets._free_on_host(host, port):
            continue
        claimed = MultiModelEndpoint.objects.filter(pk=endpoint.pk, port=None)
        try:
            if claimed.update(port=port):
                return port
        except IntegrityError:
            continue  # another endpoint took it first
        endpoint.refresh_from_db(fields=["port"])
        return endpoint.port
    raise BackendError(f"target {target.name} has no free port left in {low}-{high}")


# -- helpers ---------------------------------------------------------------------------------

def _locked(endpoint: MultiModelEndpoint) -> MultiModelEndpoint:
    # Two owners changing members at once: the second waits here and bumps after the first.
    lock_open(endpoint.environment)  # its project and environment, in that order
    return MultiModelEndpoint.objects.select_for_update(of=("self",)).select_related(
        "environment").get(pk=endpoint.pk)


def _bump(endpoint: MultiModelEndpoint) -> None:
    MultiModelEndpoint.objects.filter(pk=endpoint.pk).update(generation=F("generation") + 1)
    endpoint.refresh_from_db(fields=["generation"])


def _alias_version(model: RegisteredModel, alias: str, missing: object = ...):
    found = Alias.objects.filter(model=model, name=alias).select_related("version").first()
    if found is not None:
        return found.version
    if missing is not ...:
        return missing
    raise ValidationFailed(f"{model.name} has no alias {alias!r}", field="alias")


def _check_name(name: str) -> None:
    try:
        name_validator(name)
    except Exception as e:  # noqa: BLE001 - Django's ValidationError, said our way
        raise ValidationFailed(f"invalid name {name!r}: {e}", field="name") from e


def _check_settings(memory_budget_mb: int, top_models: int) -> None:
    if not 1 <= int(memory_budget_mb) <= 1024 * 1024:
        raise ValidationFailed("the memory budget is 1 MiB to 1 TiB", field="memory_budget_mb")
    if not 0 <= int(top_models) <= MAX_TOP_MODELS:
        raise ValidationFailed(f"top_models is 0 to {MAX_TOP_MODELS}", field="top_models")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f}"
