"""People, managed by staff: create, list, deactivate (never delete), audited.

The API (``/api/v1/users/``) and ``manage.py createuser`` call these. A person is created
with a password, or without one and a link to set it, shown once to whoever created them
(the portal sends no mail: it has no setting for its own public address, decision 46). A
person is never deleted, since their name stays in the audit trail, reviews and rollouts:
they are deactivated, which ends their sign-ins, sessions and API tokens at once (both
authentications refuse inactive accounts). Staff status is given in the admin only.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from portal.accounts.choices import Role
from portal.accounts.models import Membership
from portal.audit import services as audit
from portal.errors import Conflict, NotAllowed, ValidationFailed


def require_staff(actor, action: str = "manage people") -> None:
    if not (getattr(actor, "is_authenticated", False) and actor.is_staff):
        raise NotAllowed(f"only staff may {action}", code="staff_required")


def set_password_path(user) -> str:
    """The path of a one-time link to set the account's password: Django's reset token, which
    stops working once a password is set or after ``PASSWORD_RESET_TIMEOUT`` (3 days)."""
    return reverse("accounts:set-password", args=[
        urlsafe_base64_encode(force_bytes(user.pk)), default_token_generator.make_token(user)])


def _checked_user(username: str, email: str, password: str | None):
    user_model = get_user_model()
    user = user_model(username=(username or "").strip(), email=(email or "").strip())
    try:
        user.full_clean(exclude=["password"], validate_unique=False)
    except DjangoValidationError as e:
        field, messages = next(iter(e.message_dict.items()))
        raise ValidationFailed(f"{field}: {' '.join(messages)}", field=field) from e
    if password is not None:
        try:
            password_validation.validate_password(password, user)
        except DjangoValidationError as e:
            raise ValidationFailed("password: " + " ".join(e.messages), field="password") from e
    return user


def checked_new_user(username: str, email: str, password: str):
    """An unsaved account with a validated name, address and password (Django's password
    validators), for a person creating their own with an invitation link."""
    user = _checked_user(username, email, password or "")
    user.set_password(password)
    return user


def create_user(actor, *, username: str, email: str = "", password: str | None = None,
                project=None, role: str | None = None):
    """Create an active account (never staff): with ``password``, or with none usable and
    a set-password link to hand over. With ``project``, a membership with ``role`` (viewer
    by default) too. ``actor`` None: the operator (``manage.py createuser``).

    Returns ``(user, link_path)``; the path is None when a password was given."""
    if actor is not None:
        require_staff(actor, "create accounts")
    if role is not None and role not in Role.values:
        raise ValidationFailed(f"role must be one of {', '.join(Role.values)}", field="role")
    if role is not None and project is None:
        raise ValidationFailed("a role is given in a project: name the project", field="project")
    user = _checked_user(username, email, password)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user_model = get_user_model()
    try:
        with transaction.atomic():
            if user_model.objects.filter(username=user.username).exists():
                raise Conflict(f"an account named {user.username!r} exists already",
                               code="duplicate_user", field="username")
            user.save()
            audit.record(actor, "user.create", user,
                         changes={"username": user.username, "email": user.email,
                                  "password": "set" if password is not None else "link"},
                         object_repr=f"user {user.username}")
            if project is not None:
                role = role or Role.VIEWER
                membership = Membership.objects.create(project=project, user=user, role=role)
                audit.record(actor, "membership.create", membership,
                             changes={"role": audit.change(None, role)},
                             project_id=project.pk)
    except IntegrityError as e:  # created at this very moment by someone else
        raise Conflict(f"an account named {user.username!r} exists already",
                       code="duplicate_user", field="username") from e
    return user, (None if password is not None else set_password_path(user))


def deactivate_user(actor, user):
    """Deactivate an account (deactivating an inactive one changes nothing). Not oneself
    (409 ``self_deactivation``: the last staff member could lock everyone out); a
    superuser only by a superuser."""
    require_staff(actor, "deactivate accounts")
    if user.pk == actor.pk:
        raise Conflict("you cannot deactivate your own account", code="self_deactivation")
    if user.is_superuser and not actor.is_superuser:
        raise NotAllowed("only a superuser may deactivate a superuser",
                         code="superuser_required")
    with transaction.atomic():
        locked = type(user).objects.select_for_update().get(pk=user.pk)
        if not locked.is_active:
            return locked
        locked.is_active = False
        locked.save(update_fields=["is_active"])
        audit.record(actor, "user.deactivate", locked,
                     changes={"is_active": audit.change(True, False)},
                     object_repr=f"user {locked.username}")
    return locked


def people():
    """Every account, for staff (``/api/v1/users/``)."""
    return get_user_model().objects.order_by("username")
