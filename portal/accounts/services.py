"""Roles, memberships and API tokens."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from portal.accounts.choices import DEFAULT_TOKEN_SCOPES, ROLE_RANK, Role, TokenScope
from portal.accounts.models import ApiToken, Membership, hash_token
from portal.audit import services as audit
from portal.errors import Conflict, NotAllowed, NotFound, ValidationFailed

TOKEN_PREFIX = "mg_"
# last_used_at is written at most this often per token, so reads don't each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def role_in(user, project) -> str | None:
    """The user's role in ``project`` (staff act as owners everywhere), or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_staff:
        return Role.OWNER
    cache = getattr(user, "_modelgate_roles", None)
    if cache is None:
        cache = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
        user._modelgate_roles = cache
    return cache.get(project.pk if hasattr(project, "pk") else project)


def has_role(user, project, role: str) -> bool:
    current = role_in(user, project)
    return current is not None and ROLE_RANK[current] >= ROLE_RANK[role]


def require_role(user, project, role: str, action: str = "do this") -> None:
    """Raise NotFound for outsiders (no leak of what exists), NotAllowed for low roles."""
    current = role_in(user, project)
    if current is None:
        raise NotFound(f"project {getattr(project, 'slug', project)} was not found")
    if ROLE_RANK[current] < ROLE_RANK[role]:
        raise NotAllowed(f"you need the {role} role in project {project} to {action} "
                         f"(you are {current})", code="role_required")


def visible_project_ids(user) -> QuerySet | None:
    """Project ids the user may read, or None when the user may read every project."""
    if user.is_staff:
        return None
    return Membership.objects.filter(user=user).values("project_id")


def filter_visible(queryset: QuerySet, user, project_field: str = "project") -> QuerySet:
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    ids = visible_project_ids(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{project_field}__in": ids})


# Memberships ---------------------------------------------------------------------------

def add_member(actor, project, username: str, role: str) -> Membership:
    """Give ``username`` a role in ``project``. Outsiders learn nothing about who exists:
    the role check comes before the user is looked up."""
    require_role(actor, project, Role.OWNER, "manage members")
    user = find_user(username)
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {', '.join(Role.values)}", field="role")
    with transaction.atomic():
        if Membership.objects.filter(project=project, user=user).exists():
            raise Conflict(f"{user} is already a member of {project}", code="duplicate_member")
        membership = Membership.objects.create(project=project, user=user, role=role)
        audit.record(actor, "membership.create", membership, changes={"role": audit.change(None, role)},
                     project_id=project.pk)
    return membership


def change_role(actor, membership: Membership, role: str) -> Membership:
    project = membership.project
    require_role(actor, project, Role.OWNER, "manage members")
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {', '.join(Role.values)}", field="role")
    with transaction.atomic():
        # Lock the project's owner rows: two owners demoting each other at once must not
        # leave the project without any owner.
        owners = list(Membership.objects.select_for_update()
                      .filter(project=project, role=Role.OWNER).values_list("pk", flat=True))
        if membership.role == Role.OWNER and role != Role.OWNER and owners == [membership.pk]:
            raise Conflict("a project must keep at least one owner", code="last_owner")
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record(actor, "membership.update", membership, changes={"role": audit.change(before, role)},
                     project_id=project.pk)
    return membership


def remove_member(actor, membership: Membership) -> None:
    project = membership.project
    require_role(actor, project, Role.OWNER, "manage members")
    with transaction.atomic():
        owners = list(Membership.objects.select_for_update()
                      .filter(project=project, role=Role.OWNER).values_list("pk", flat=True))
        if owners == [membership.pk]:
            raise Conflict("a project must keep at least one owner", code="last_owner")
        audit.record(actor, "membership.delete", membership,
                     changes={"role": audit.change(membership.role, None)}, project_id=project.pk)
        membership.delete()


def find_user(username: str):
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist as e:
        raise NotFound(f"no user named {username!r}", field="username") from e


# API tokens ----------------------------------------------------------------------------

def create_token(user, name: str, expires_at: datetime | None = None,
                 scopes: list[str] | None = None) -> tuple[ApiToken, str]:
    """Create a token and return it with its key; the key is never stored or shown again.

    Tokens expire: after ``MODELGATE_TOKEN_DAYS`` unless asked otherwise, and never later
    than ``MODELGATE_TOKEN_MAX_DAYS``. Scopes default to read and write; approving (reviews,
    promotions, A/B decisions) must be asked for.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("give the token a name, e.g. 'ci pipeline'", field="name")
    now = timezone.now()
    if expires_at is None:
        expires_at = now + timedelta(days=settings.MODELGATE_TOKEN_DAYS)
    if expires_at <= now:
        raise ValidationFailed("the expiry must be in the future", field="expires_at")
    if expires_at > now + timedelta(days=settings.MODELGATE_TOKEN_MAX_DAYS):
        raise ValidationFailed(f"tokens live at most {settings.MODELGATE_TOKEN_MAX_DAYS} days",
                               field="expires_at")
    scopes = list(DEFAULT_TOKEN_SCOPES if scopes is None else scopes)
    unknown = sorted(set(scopes) - set(TokenScope.values))
    if unknown or not scopes:
        raise ValidationFailed(f"scopes are some of {', '.join(TokenScope.values)}",
                               field="scopes")
    scopes = [s for s in TokenScope.values if s in scopes]
    key = TOKEN_PREFIX + secrets.token_urlsafe(30)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name[:100], prefix=key[:10],
                                        key_hash=hash_token(key), expires_at=expires_at,
                                        scopes=scopes)
        audit.record(user, "token.create", token, changes={"name": name, "scopes": scopes},
                     object_repr=f"token {token.name} ({token.prefix}…) of {user}")
    return token, key


def revoke_token(actor, token: ApiToken) -> ApiToken:
    if token.user_id != actor.pk and not actor.is_staff:
        raise NotFound("token not found")
    if token.revoked_at is not None:
        return token
    with transaction.atomic():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor, "token.revoke", token,
                     object_repr=f"token {token.name} ({token.prefix}…) of {token.user}")
    return token


def authenticate_token(key: str):
    """Return the user owning an active token with this key, or None."""
    try:
        token = ApiToken.objects.select_related("user").get(key_hash=hash_token(key))
    except ApiToken.DoesNotExist:
        return None
    if not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token
