"""Archiving: soft deletion of projects, models, datasets and environments (decision 58).

An archived object keeps its rows, files and history: it stays readable by id, is left out
of default lists (``?archived=true`` lists them) and takes nothing new (409 ``archived``):
no model, dataset or environment in an archived project, no version of an archived model,
no version naming an archived dataset, no release of an archived model or into an archived
environment. Objects of an archived project count as archived. Archiving and restoring are
audited (``<kind>.archive``, ``<kind>.restore``) and answer the object as it is when done
already, recording nothing (two pipelines cleaning up at once both succeed).

What must not be archived while it happens (a rollout in progress, an open release
request) is known to the apps above the registry: they say it with
``refuse_archive_when(kind, check)`` from their ``AppConfig.ready`` (the releases app's
``portal.releases.archive``), as the registry imports no app above it (Layers).

Races: archiving locks the object's row; whatever creates something inside an object
(``lock_open``) locks the same rows first, so the two queue and one wins whole: the
creation sees the object archived and is refused, or the archive sees what was created and
is refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import Conflict
from portal.registry.models import Archivable, Dataset, Project, RegisteredModel

ARCHIVED = "archived"  # the code of every refusal of something archived

# Who may archive each kind; restoring is an owner's, for every kind (staff act as owners).
ARCHIVE_ROLE = {"project": Role.OWNER, "environment": Role.OWNER,
                "model": Role.CONTRIBUTOR, "dataset": Role.CONTRIBUTOR}

_REFUSALS: dict[str, list[Callable[[Archivable], None]]] = defaultdict(list)


def refuse_archive_when(kind: str, check: Callable[[Archivable], None]) -> None:
    """Register ``check(locked_object)``, run under the object's row lock before it is
    archived; it raises a ``Conflict`` saying what must end first."""
    if check not in _REFUSALS[kind]:
        _REFUSALS[kind].append(check)


def kind_of(obj: Archivable) -> str:
    return {Project: "project", RegisteredModel: "model", Dataset: "dataset"}.get(
        type(obj), obj._meta.model_name)


def _project_of(obj: Archivable) -> Project:
    return obj if isinstance(obj, Project) else obj.project


def archived_detail(obj: Archivable) -> str | None:
    """Why nothing new may go into ``obj`` (it or its project is archived), or None."""
    project = _project_of(obj)
    if obj.archived_at is not None:
        return f"{kind_of(obj)} {obj} is archived"
    if project.archived_at is not None:
        return f"project {project.slug} is archived"
    return None


def refuse_archived(*objects: Archivable, field: str | None = None) -> None:
    """409 ``archived`` when any of ``objects`` (or its project) is archived."""
    for obj in objects:
        detail = archived_detail(obj)
        if detail is not None:
            raise Conflict(f"{detail}: an owner may restore it", code=ARCHIVED, field=field)


def lock_open(*objects: Archivable) -> None:
    """Lock the rows of ``objects`` and their projects (projects first, then in the order
    given) and refuse if any is archived; call inside the transaction that creates
    something in them. The row lock is what archiving takes, so they queue (module doc)."""
    rows = [_project_of(obj) for obj in objects] + [o for o in objects
                                                      if not isinstance(o, Project)]
    seen = set()
    for row in rows:
        key = (type(row), row.pk)
        if key in seen:
            continue
        seen.add(key)
        # FOR NO KEY UPDATE: rows inserted meanwhile that refer to it (FOR KEY SHARE) are
        # not held up.
        row.archived_at = (type(row).objects.select_for_update(no_key=True).filter(pk=row.pk)
                           .values_list("archived_at", flat=True).get())
    refuse_archived(*objects)


def _set_archived(user, obj: Archivable, archive: bool) -> Archivable:
    kind = kind_of(obj)
    project = _project_of(obj)
    needed = ARCHIVE_ROLE[kind] if archive else Role.OWNER
    if archive and kind == "dataset" and obj.is_evaluation:
        # The evidence releases are judged on is the approvers' to choose (decision 55):
        # archiving it is choosing too (without it, gates fall back on declared figures).
        needed, kind = Role.APPROVER, "evaluation dataset"
    require_role(user, project, needed, f"{'archive' if archive else 'restore'} {kind}s")
    kind = kind_of(obj)
    with transaction.atomic():
        # Serialise with another archive or restore, and with whatever creates something in
        # it (lock_open): one of them wins whole (module doc).
        locked = type(obj).objects.select_for_update(no_key=True).get(pk=obj.pk)
        if locked.is_archived == archive:
            return locked  # done already: nothing to record
        if archive:
            for check in _REFUSALS[kind]:
                check(locked)
        before = locked.archived_at
        locked.archived_at = timezone.now() if archive else None
        locked.archived_by = user if archive else None
        locked.save(update_fields=["archived_at", "archived_by"])
        audit.record(user, f"{kind}.{'archive' if archive else 'restore'}", locked,
                     changes={"archived_at": audit.change(before, locked.archived_at)})
    return locked


def archive_object(user, obj: Archivable) -> Archivable:
    """Archive ``obj`` (a project, model, dataset or environment): owners archive projects
    and environments, contributors models and datasets. 409 when a registered check
    refuses (``refuse_archive_when``)."""
    return _set_archived(user, obj, True)


def restore_object(user, obj: Archivable) -> Archivable:
    """Bring an archived object back, as it was: an owner's act for every kind."""
    return _set_archived(user, obj, False)


def archive_project(user, project: Project) -> Project:
    return archive_object(user, project)


def restore_project(user, project: Project) -> Project:
    return restore_object(user, project)


def archive_model(user, model: RegisteredModel) -> RegisteredModel:
    return archive_object(user, model)


def restore_model(user, model: RegisteredModel) -> RegisteredModel:
    return restore_object(user, model)


def archive_dataset(user, dataset: Dataset) -> Dataset:
    """Versions naming the dataset keep it (validation sample, drift baseline,
    explanations read its file, which stays); new versions may not name it, and it measures
    no new version (an evaluation dataset)."""
    return archive_object(user, dataset)


def restore_dataset(user, dataset: Dataset) -> Dataset:
    return restore_object(user, dataset)
