from django.db import models


class Role(models.TextChoices):
    """Project roles, each including the rights of those before it."""

    VIEWER = "viewer", "Viewer"
    CONTRIBUTOR = "contributor", "Contributor"
    APPROVER = "approver", "Approver"
    OWNER = "owner", "Owner"


class TokenScope(models.TextChoices):
    """What an API token may do, on top of its owner's roles (never beyond them)."""

    READ = "read", "Read"
    WRITE = "write", "Write (register, request releases, feedback, pause and roll back)"
    APPROVE = "approve", "Approve (reviews, promote, A/B decisions, champion alias)"


DEFAULT_TOKEN_SCOPES = ["read", "write"]
ROLE_RANK = {Role.VIEWER: 1, Role.CONTRIBUTOR: 2, Role.APPROVER: 3, Role.OWNER: 4}


class InvitationStatus(models.TextChoices):
    """Where an invitation to a project stands. ``expired`` is also what an open one past
    its ``expires_at`` reads as, before anything stores it."""

    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"
