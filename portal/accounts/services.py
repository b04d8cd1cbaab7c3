"""Roles, memberships and API tokens."""

from __future__ import annotations

import logging
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from portal.accounts.choices import (
    DEFAULT_TOKEN_SCOPES,
    ROLE_RANK,
    InvitationStatus,
    Role,
    TokenScope,
)
from portal.accounts.mail import base_url_for_mail, mail_configured
from portal.accounts.models import ApiToken, Invitation, Membership, hash_token
from portal.accounts.users import checked_new_user
from portal.audit import services as audit
from portal.errors import NOT_FOUND, Conflict, NotAllowed, NotFound, ValidationFailed
from portal.prepared import Prepared

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mg_"
# last_used_at is written at most this often per token, so reads don't each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@Prepared
def _roles_of(user_id: int):
    # Unordered: the memberships' default order joins the users table for nothing here.
    return Membership.objects.filter(user_id=user_id).order_by().values_list("project_id",
                                                                             "role")


def role_in(user, project) -> str | None:
    """The user's role in ``project`` (staff act as owners everywhere), or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_staff:
        return Role.OWNER
    cache = getattr(user, "_modelgate_roles", None)
    if cache is None:
        cache = dict(_roles_of.rows(user.pk))
        user._modelgate_roles = cache
    return cache.get(project.pk if hasattr(project, "pk") else project)


def has_role(user, project, role: str) -> bool:
    current = role_in(user, project)
    return current is not None and ROLE_RANK[current] >= ROLE_RANK[role]


def require_role(user, project, role: str, action: str = "do this") -> None:
    """Raise NotFound for outsiders (no leak of what exists), NotAllowed for low roles."""
    current = role_in(user, project)
    if current is None:
        raise NotFound(NOT_FOUND)  # not even the slug: the caller may have sent only an id
    if ROLE_RANK[current] < ROLE_RANK[role]:
        raise NotAllowed(f"you need the {role} role in project {project} to {action} "
                         f"(you are {current})", code="role_required")


def visible_project_ids(user) -> QuerySet | list[int] | None:
    """Project ids the user may read, or None when the user may read every project: a
    subquery, or inside ``memberships_read_once`` the ids that block read."""
    if user.is_staff:
        return None
    ids = getattr(user, "_modelgate_visible_now", None)
    if ids is not None:
        return ids
    return Membership.objects.filter(user=user).values("project_id")


@contextmanager
def memberships_read_once(user):
    """For a page of many lists (the dashboard): the user's memberships read once, at the
    start of this request, and given to every visibility filter in the block as ids rather
    than compiled into each query as a subquery (about 0.25 ms of Django's work a query).
    Nothing outlives the block: a read page changes no membership, and the next request
    reads them again."""
    if not getattr(user, "is_authenticated", False) or user.is_staff:
        yield
        return
    user._modelgate_visible_now = list(Membership.objects.filter(user=user).order_by()
                                       .values_list("project_id", flat=True))
    try:
        yield
    finally:
        user.__dict__.pop("_modelgate_visible_now", None)


def filter_visible(queryset: QuerySet, user, project_field: str = "project") -> QuerySet:
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    ids = visible_project_ids(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{project_field}__in": ids})


# Memberships ---------------------------------------------------------------------------

# What an owner is told after inviting anyone: the same whether that account exists, is a
# member already or has an open invitation (nothing changes then), so inviting is no way to
# learn who has an account.
INVITED = "If that account exists, it has been invited."


def invite(actor, project, username: str, role: str) -> None:
    """Invite ``username`` to ``project`` with ``role``: an owner's act (any role, owner
    too); the membership exists only once the invited person accepts (``accept_invitation``).

    Returns nothing, and does the same work whether or not an account of that name exists:
    the invitation is stored with the username as typed (and ``user`` None when no account
    has it, which nobody can accept), audited, and listed to the project's owners alike.
    Someone who is a member already, or has an open invitation, is left as they are (roles
    change with ``change_role``). Outsiders learn nothing: the role check comes first."""
    require_role(actor, project, Role.OWNER, "invite members")
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {', '.join(Role.values)}", field="role")
    username = (username or "").strip()
    if not username or len(username) > 150:
        raise ValidationFailed("give the username of the account to invite", field="username")
    user_model = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        # Open invitations past their expiry no longer count as open (one open per person).
        Invitation.objects.filter(project=project, status=InvitationStatus.OPEN,
                                  expires_at__lte=now).update(status=InvitationStatus.EXPIRED)
        pending = (Invitation.objects.select_for_update()
                   .filter(project=project, username=username, status=InvitationStatus.OPEN)
                   .first())
        if pending is not None:
            if user is not None and pending.user_id != user.pk:
                # The account was created (or replaced) after the invitation: it is theirs.
                pending.user = user
                pending.save(update_fields=["user"])
            return
        if Membership.objects.filter(project=project, user__username=username).exists():
            return
        try:
            with transaction.atomic():
                invitation = Invitation.objects.create(
                    project=project, user=user, username=username, role=role,
                    invited_by=actor, created_at=now,
                    expires_at=now + timedelta(days=settings.MODELGATE_INVITATION_DAYS))
        except IntegrityError:
            return  # invited at this very moment by another owner (or under a former name)
        audit.record(actor, "invitation.create", invitation,
                     changes={"username": username, "role": audit.change(None, role),
                              "expires_at": invitation.expires_at},
                     object_repr=_invitation_repr(invitation, project), project_id=project.pk)


# Inviting by e-mail address ------------------------------------------------------------

# What an owner is told after inviting an address when mail is configured: the same whether
# or not an account has that address.
INVITED_BY_EMAIL = "An invitation has been sent to that address."
# ...and when it is not: the link, shown once, goes through the owner.
INVITED_WITH_LINK = ("No mail is configured, so nothing was sent: hand this link to the "
                     "person yourself. It is shown only now, works once and expires with "
                     "the invitation.")


# ...and when mail is configured but the portal's own address is not.
INVITED_WITH_LINK_NO_ADDRESS = (
    "Mail is configured, but the portal's address is not (MODELGATE_BASE_URL), so nothing "
    "was sent: a mailed link would lead to this server's loopback address. Hand this link to "
    "the person yourself; it is shown only now, works once and expires with the "
    "invitation. Ask your operator to set MODELGATE_BASE_URL.")
def join_path(key: str) -> str:
    return reverse("accounts:invitation-join", args=[key])


@dataclass(frozen=True)
class InvitedByEmail:
    """The owner's answer: ``accept_url`` only when no mail is configured (shown once)."""

    detail: str
    accept_url: str | None = None


def invite_by_email(actor, project, email: str, role: str, *,
                    site_url: str) -> InvitedByEmail:
    """Invite an e-mail address to ``project`` with ``role`` (owners).

    The invitation carries a one-time link (a key of 32 random bytes; only its sha256 is
    stored, and it dies with the invitation: accepted, revoked, or past ``expires_at``).
    With mail configured, the link is mailed and the owner's answer is the same whatever
    the address; without, the owner is given the link to hand over, once. Either way the
    answer and the link are the same whether or not an account has the address, so
    inviting tells nobody who has one: the link page offers both to create an account and
    to join with one's own, and the one account with that address (if just one, not a
    member nor invited already) also finds the invitation on its Invitations page. An
    address invited already gets a new link, which replaces the old one.
    ``site_url`` is the address the owner is using, which a link shown to them is made
    from; a mailed link starts with the portal's configured address
    (``MODELGATE_BASE_URL``) instead, never with what a request's Host header said: a link
    in someone's mailbox must not lead to a host a request could name."""
    require_role(actor, project, Role.OWNER, "invite members")
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {', '.join(Role.values)}", field="role")
    email = (email or "").strip()
    try:
        validate_email(email)
    except DjangoValidationError as e:
        raise ValidationFailed("give the e-mail address of the person to invite",
                               field="email") from e
    if len(email) > 150:
        raise ValidationFailed("an address to invite has at most 150 characters",
                               field="email")
    base = base_url_for_mail()
    mailed = mail_configured() and base is not None
    key = secrets.token_urlsafe(32)
    url = (base if mailed else site_url).rstrip("/") + join_path(key)
    shown = INVITED_WITH_LINK if not mail_configured() else INVITED_WITH_LINK_NO_ADDRESS
    answer = InvitedByEmail(INVITED_BY_EMAIL) if mailed else \
        InvitedByEmail(shown, accept_url=url)
    user_model = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        holders = list(user_model.objects.filter(email__iexact=email, is_active=True)[:2])
        user = holders[0] if len(holders) == 1 else None
        Invitation.objects.filter(project=project, status=InvitationStatus.OPEN,
                                  expires_at__lte=now).update(status=InvitationStatus.EXPIRED)
        pending = (Invitation.objects.select_for_update()
                   .filter(project=project, status=InvitationStatus.OPEN, by_email=True,
                           username__iexact=email).first())
        if pending is not None:
            # Invited again: a new link replaces the old one (which stops working), so the
            # link the owner is given, or that is mailed, always works.
            pending.token_hash = hash_token(key)
            pending.save(update_fields=["token_hash"])
            audit.record(actor, "invitation.update", pending, changes={"link": "renewed"},
                         object_repr=_invitation_repr(pending, project),
                         project_id=project.pk)
            if mailed:
                transaction.on_commit(lambda: _mail_link(pending, project, actor, url))
            return answer
        if user is not None and (
                Membership.objects.filter(project=project, user=user).exists()
                or Invitation.objects.filter(project=project, user=user,
                                             status=InvitationStatus.OPEN).exists()):
            # A member, or invited already: the account is left as it is, and the address
            # still gets its link (the same answer as for any other address).
            user = None
        try:
            with transaction.atomic():
                invitation = Invitation.objects.create(
                    project=project, user=user, username=email, by_email=True,
                    token_hash=hash_token(key), role=role, invited_by=actor, created_at=now,
                    expires_at=now + timedelta(days=settings.MODELGATE_INVITATION_DAYS))
        except IntegrityError:
            return answer  # invited at this very moment by another owner
        audit.record(actor, "invitation.create", invitation,
                     changes={"email": email, "role": audit.change(None, role),
                              "expires_at": invitation.expires_at,
                              "link": "mailed" if mailed else "shown to the inviter"},
                     object_repr=_invitation_repr(invitation, project), project_id=project.pk)
        if mailed:
            # After the commit: a link mailed for an invitation rolled back would not work.
            transaction.on_commit(lambda: _mail_link(invitation, project, actor, url))
    return answer


def _mail_link(invitation: Invitation, project, inviter, url: str) -> None:
    subject = f"[Modelgate] You are invited to {project.name}"
    body = (f"{inviter.get_username()} invites you to join the project {project.name} in "
            f"Modelgate as {invitation.role}.\n\n"
            f"Open this link to create your account, or to join with the one you have:\n"
            f"{url}\n\n"
            f"It works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC.")
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [invitation.username])
    except Exception:  # the invitation stands; the owner can revoke it and invite again
        log.exception("could not mail the invitation %s of project %s", invitation.pk,
                      project.slug)


def invitation_by_link(key: str) -> Invitation:
    """The invitation a link's key opens, whatever its state (404 for an unknown key)."""
    invitation = (Invitation.objects.select_related("project", "invited_by")
                  .filter(token_hash=hash_token(key or "")).exclude(token_hash="").first())
    if invitation is None:
        raise NotFound("this invitation link is not valid: ask an owner of the project for "
                       "a new one", code="invitation_link_invalid")
    return invitation


def require_open_link(invitation: Invitation) -> None:
    """409 when the link's invitation was used, revoked, declined or has expired."""
    if invitation.state == InvitationStatus.ACCEPTED:
        raise Conflict("this invitation link was used already: sign in with the account it "
                       "made", code="invitation_accepted")
    _require_open(invitation)


def join_by_link(key: str, *, actor=None, username: str = "",
                 password: str = "") -> tuple[Invitation, object]:
    """Use an invitation link: with ``actor`` (signed in), join with that account; without,
    create an account (``username``, ``password``, the invited address) and join with it.

    Returns the invitation and the account that joined. The link works once: the
    invitation is locked while it is used, so two uses at once cannot both succeed."""
    found = invitation_by_link(key)
    new_user = None
    if actor is None:
        new_user = checked_new_user(username, found.username, password)
    with transaction.atomic():
        invitation = (Invitation.objects.select_for_update(of=("self",))
                      .select_related("project").get(pk=found.pk))
        require_open_link(invitation)
        if new_user is not None:
            user_model = get_user_model()
            if user_model.objects.filter(username=new_user.username).exists():
                raise Conflict(f"an account named {new_user.username!r} exists already: "
                               "choose another name", code="duplicate_user", field="username")
            try:
                with transaction.atomic():
                    new_user.save()
            except IntegrityError as e:  # that name was taken at this very moment
                raise Conflict(f"an account named {new_user.username!r} exists already: "
                               "choose another name", code="duplicate_user",
                               field="username") from e
            audit.record(new_user, "user.create", new_user,
                         changes={"username": new_user.username, "email": new_user.email,
                                  "password": "set", "invitation": invitation.pk},
                         object_repr=f"user {new_user.username}")
            actor = new_user
        _answer(actor, invitation, InvitationStatus.ACCEPTED, via="link")
    actor.__dict__.pop("_modelgate_roles", None)
    return invitation, actor


def _invitation_repr(invitation: Invitation, project) -> str:
    return f"invitation of {invitation.username} to {project.slug} as {invitation.role}"


def _require_open(invitation: Invitation) -> None:
    state = invitation.state
    if state == InvitationStatus.EXPIRED:
        raise Conflict(f"this invitation expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC; "
                       "ask an owner of the project for a new one", code="invitation_expired")
    if state != InvitationStatus.OPEN:
        raise Conflict(f"this invitation was {state} already", code=f"invitation_{state}")


def _respond(actor, invitation: Invitation, status: str) -> Invitation:
    """Accept or decline, as the invited person: anyone else is told it does not exist."""
    if not getattr(actor, "is_authenticated", False):
        raise NotFound(NOT_FOUND)
    with transaction.atomic():
        invitation = (Invitation.objects.select_for_update(of=("self",))
                      .select_related("project").filter(pk=invitation.pk, user=actor).first())
        if invitation is None:
            raise NotFound(NOT_FOUND)
        _require_open(invitation)
        _answer(actor, invitation, status)
    actor.__dict__.pop("_modelgate_roles", None)  # the role cache of this request
    return invitation


def _answer(actor, invitation: Invitation, status: str, via: str = "") -> None:
    """Accept (``actor`` becomes a member with the invited role) or decline the locked, open
    invitation, audited; by the invited account or through its link (``via``)."""
    project = invitation.project
    if status == InvitationStatus.ACCEPTED:
        if Membership.objects.filter(project=project, user=actor).exists():
            raise Conflict(f"you are a member of project {project.slug} already",
                           code="already_member")
        membership = Membership.objects.create(project=project, user=actor,
                                               role=invitation.role)
        audit.record(actor, "membership.create", membership,
                     changes={"role": audit.change(None, invitation.role),
                              "invitation": invitation.pk}, project_id=project.pk)
    invitation.status = status
    invitation.responded_at = timezone.now()
    invitation.save(update_fields=["status", "responded_at"])
    action = "invitation.accept" if status == InvitationStatus.ACCEPTED else \
        "invitation.decline"
    audit.record(actor, action, invitation,
                 changes={"status": audit.change(InvitationStatus.OPEN, status),
                          "role": invitation.role, **({"via": via} if via else {})},
                 object_repr=_invitation_repr(invitation, project), project_id=project.pk)


def accept_invitation(actor, invitation: Invitation) -> Invitation:
    """The invited person becomes a member with the invited role (409 ``invitation_expired``,
    ``invitation_revoked``... once it is no longer open; 404 for anyone else)."""
    return _respond(actor, invitation, InvitationStatus.ACCEPTED)


def decline_invitation(actor, invitation: Invitation) -> Invitation:
    return _respond(actor, invitation, InvitationStatus.DECLINED)


def revoke_invitation(actor, invitation: Invitation) -> Invitation:
    """An owner withdraws an open invitation (revoking a revoked one changes nothing)."""
    project = invitation.project
    require_role(actor, project, Role.OWNER, "manage members")
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.status == InvitationStatus.REVOKED:
            return invitation
        _require_open(invitation)
        invitation.status = InvitationStatus.REVOKED
        invitation.responded_at = timezone.now()
        invitation.save(update_fields=["status", "responded_at"])
        audit.record(actor, "invitation.revoke", invitation,
                     changes={"status": audit.change(InvitationStatus.OPEN,
                                                     InvitationStatus.REVOKED)},
                     object_repr=_invitation_repr(invitation, project), project_id=project.pk)
    return invitation


def invitations_to(user) -> QuerySet:
    """Invitations addressed to ``user`` (every status; ``open_invitations_to`` for open)."""
    if not getattr(user, "is_authenticated", False):
        return Invitation.objects.none()
    return Invitation.objects.filter(user=user)


def open_invitations_to(user) -> QuerySet:
    return invitations_to(user).filter(Invitation.open_at(timezone.now()))


def open_invitations_of(project) -> QuerySet:
    """The project's open invitations, for its owners' members page: every username as
    typed, whether or not an account has it."""
    return (Invitation.objects.filter(Invitation.open_at(timezone.now()), project=project)
            .only("username", "role", "expires_at").order_by("username"))


def invitations_sent_by_projects_of(user) -> QuerySet:
    """Invitations of the projects ``user`` owns (staff: of every project)."""
    if not getattr(user, "is_authenticated", False):
        return Invitation.objects.none()
    if user.is_staff:
        return Invitation.objects.all()
    return Invitation.objects.filter(project__in=Membership.objects.filter(
        user=user, role=Role.OWNER).values("project_id"))


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


def remove_member(actor, membership: Membership, comment: str = "") -> None:
    """Take a member out of the project; ``comment`` (why) goes into the audit trail."""
    project = membership.project
    comment = (comment or "").strip()[:1000]
    require_role(actor, project, Role.OWNER, "manage members")
    with transaction.atomic():
        owners = list(Membership.objects.select_for_update()
                      .filter(project=project, role=Role.OWNER).values_list("pk", flat=True))
        if owners == [membership.pk]:
            raise Conflict("a project must keep at least one owner", code="last_owner")
        audit.record(actor, "membership.delete", membership,
                     changes={"role": audit.change(membership.role, None),
                              **({"comment": comment} if comment else {})},
                     project_id=project.pk)
        membership.delete()


# API tokens ----------------------------------------------------------------------------

def login_scopes(user, asked: list[str] | None) -> list[str] | None:
    """The scopes a password login may take: any it asks for, approve only for a person who
    approves somewhere (scopes never widen roles; this keeps a token from holding a scope
    its owner cannot use). None: the default (read and write)."""
    if asked and TokenScope.APPROVE in asked and not (
            user.is_staff or Membership.objects.filter(
                user=user, role__in=[Role.APPROVER, Role.OWNER]).exists()):
        raise NotAllowed("the approve scope is for approvers: you approve in no project",
                         code="scope_not_held", field="scopes")
    return asked or None


def create_token(user, name: str, expires_at: datetime | None = None,
                 scopes: list[str] | None = None,
                 via: ApiToken | None = None) -> tuple[ApiToken, str]:
    """Create a token and return it with its key; the key is never stored or shown again.

    Tokens expire: after ``MODELGATE_TOKEN_DAYS`` unless asked otherwise, and never later
    than ``MODELGATE_TOKEN_MAX_DAYS``. Scopes default to read and write; approving (reviews,
    promotions, A/B decisions) must be asked for.

    ``via`` is the API token the request came with (None for a signed-in session or a
    password). Its scopes are a ceiling: it creates only tokens with scopes it holds
    (403 ``scope_ceiling``), expiring no later than itself (403 ``expiry_ceiling``).
    """
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("give the token a name, e.g. 'ci pipeline'", field="name")
    now = timezone.now()
    ceiling = via.expires_at if via is not None else None
    if expires_at is None:
        expires_at = now + timedelta(days=settings.MODELGATE_TOKEN_DAYS)
        if ceiling is not None:
            expires_at = min(expires_at, ceiling)
    elif ceiling is not None and expires_at > ceiling:
        raise NotAllowed(f"a token creates only tokens that expire no later than itself "
                         f"({ceiling:%Y-%m-%d %H:%M} UTC); sign in to create a longer-lived "
                         "one", code="expiry_ceiling", field="expires_at")
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
    if via is not None:
        held = via.scopes or []
        beyond = [s for s in scopes if s not in held]
        if beyond:
            raise NotAllowed(f"this API token holds {', '.join(held) or 'no scope'} and "
                             f"cannot create a token with {', '.join(beyond)}: a token "
                             "creates only tokens with scopes it holds; sign in, or use a "
                             "token holding every scope asked for", code="scope_ceiling",
                             field="scopes")
    key = TOKEN_PREFIX + secrets.token_urlsafe(30)
    changes = {"name": name, "scopes": scopes}
    if via is not None:
        changes["created_with"] = via.prefix
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name[:100], prefix=key[:10],
                                        key_hash=hash_token(key), expires_at=expires_at,
                                        scopes=scopes)
        audit.record(user, "token.create", token, changes=changes,
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
