"""Aliases: names (champion, challenger...) pointing at a ready version of a model."""

from __future__ import annotations

from django.db import transaction

from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import Conflict, ValidationFailed
from portal.registry.choices import VersionStatus
from portal.registry.models import Alias, ModelVersion, RegisteredModel
from portal.registry.services.base import _full_clean
from portal.registry.signals import alias_moved

PROTECTED_ALIASES = {"champion"}  # moving these needs the approver role


UNCHECKED = object()


def set_alias(user, model: RegisteredModel, name: str, version: ModelVersion,
              comment: str = "", seen=UNCHECKED) -> Alias:
    """Point ``name`` at ``version`` (creating the alias or moving it); ``comment`` (why)
    goes into the audit trail with the move. ``seen``, the version id the person was shown
    the alias at (``None``: no such alias), fences the move: if it moved meanwhile, 409."""
    require_alias_role(user, model, name)
    comment = (comment or "").strip()[:1000]
    return _point(user, model, name, version, seen=seen,
                  **({"comment": comment} if comment else {}))


def require_alias_role(user, model: RegisteredModel, name: str) -> None:
    """Refuse (403) whoever may not move alias ``name`` of ``model``: approvers move
    champion, contributors the others (a page asks before its confirmation)."""
    needed = Role.APPROVER if name in PROTECTED_ALIASES else Role.CONTRIBUTOR
    require_role(user, model.project, needed, f"move the {name} alias")


def move_alias_for_release(model: RegisteredModel, name: str, version: ModelVersion, *,
                           via: str) -> Alias:
    """Point ``name`` at ``version`` because a release of it succeeded (``via`` names the
    release, e.g. "deployment 12"), audited with no actor.

    No role is checked: the release's approvals are the authority, and the environment's
    owner chose which alias its releases move. The version must still be a ready version of
    ``model``, as for a person."""
    return _point(None, model, name, version, via=via)


def _point(user, model: RegisteredModel, name: str, version: ModelVersion, seen=UNCHECKED,
           **context) -> Alias:
    if version.model_id != model.pk:
        raise ValidationFailed(f"{version} is not a version of {model.name}", field="version")
    if version.status != VersionStatus.READY:
        raise Conflict(f"{version} is {version.get_status_display().lower()}; only ready versions "
                       "can carry an alias", code="version_not_ready", field="version")
    with transaction.atomic():
        alias = Alias.objects.select_for_update().filter(model=model, name=name).first()
        before = alias.version.number if alias else None
        if seen is not UNCHECKED and (alias.version_id if alias else None) != seen:
            raise Conflict(f"{name} moved to v{before} since you were shown it; look at it "
                           "again before moving it" if alias else
                           f"{name} was removed since you were shown it; look again",
                           code="alias_moved", field="name")
        if alias is None:
            alias = Alias(model=model, name=name, version=version, updated_by=user)
            _full_clean(alias, exclude=["updated_by"])
        elif alias.version_id == version.pk:
            return alias
        alias.version = version
        alias.updated_by = user
        alias.save()
        # Before the audit: its chain lock, held to the commit, is taken last by every act.
        alias_moved.send(Alias, alias=alias, version=version, user=user)
        audit.record(user, "alias.set", alias,
                     changes={"version": audit.change(before, version.number), **context},
                     project_id=model.project_id)
    return alias


def delete_alias(user, alias: Alias) -> None:
    needed = Role.APPROVER if alias.name in PROTECTED_ALIASES else Role.CONTRIBUTOR
    require_role(user, alias.model.project, needed, f"remove the {alias.name} alias")
    with transaction.atomic():
        # Locked first, as a move locks it: what follows it is re-applied in this order too.
        Alias.objects.select_for_update().filter(pk=alias.pk).exists()
        alias_moved.send(Alias, alias=alias, version=None, user=user)
        audit.record(user, "alias.delete", alias,
                     changes={"version": audit.change(alias.version.number, None)},
                     project_id=alias.model.project_id)
        alias.delete()
