import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

from portal.accounts.choices import ROLE_RANK, InvitationStatus, Role


class Membership(models.Model):
    """A user's role in a project."""

    project = models.ForeignKey("registry.Project", on_delete=models.CASCADE,
                                related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values),
                                   name="membership_role_valid"),
        ]
        ordering = ["project_id", "user__username"]

    def __str__(self):
        return f"{self.user} is {self.role} of {self.project}"

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def project_model() -> type[models.Model]:
    """The registry's ``Project``, which memberships and invitations are of: reached
    through the foreign key, since accounts sit below the registry (docs/architecture.md,
    Layers) and import nothing of it."""
    return Membership._meta.get_field("project").related_model


class Invitation(models.Model):
    """An owner's offer of a role in a project; a membership only once the invited person
    accepts it.

    Owners invite by username, and every invitation is stored, with the username as typed,
    whether an account of that name exists or not (``user`` is None then, and it can never
    be accepted): the answer, the work done, the audit event and the project's list of
    invitations are the same either way, so inviting tells nobody who has an account.

    Owners also invite by e-mail address (``by_email``; ``username`` holds the address).
    Such an invitation carries a one-time link whose key only its holder has (the sha256 is
    in ``token_hash``): the link lets its holder create an account, or use theirs, and join.
    ``user`` is the one account with that address, if there is one, which can also accept
    it from its Invitations page.
    """

    project = models.ForeignKey("registry.Project", on_delete=models.CASCADE,
                                related_name="invitations")
    # The account the username named when the invitation was made (None: no such account).
    # SET_NULL: a deleted account's invitations stay in the owners' list as they were.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.SET_NULL, related_name="invitations")
    username = models.CharField(max_length=150,
                                help_text="As the owner typed it: a username, or an e-mail "
                                          "address when by_email")
    by_email = models.BooleanField(default=False, help_text="Invited by e-mail address, with "
                                                            "a one-time link")
    # sha256 of the link's key (empty: no link); the key itself is never stored.
    token_hash = models.CharField(max_length=64, blank=True, default="")
    role = models.CharField(max_length=16, choices=Role.choices)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=InvitationStatus.choices,
                              default=InvitationStatus.OPEN)
    responded_at = models.DateTimeField(null=True, blank=True,
                                        help_text="When it was accepted, declined or revoked")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"],
                                    condition=models.Q(status=InvitationStatus.OPEN),
                                    name="invitation_one_open_per_user"),
            models.UniqueConstraint(fields=["project", "username"],
                                    condition=models.Q(status=InvitationStatus.OPEN),
                                    name="invitation_one_open_per_username"),
            models.UniqueConstraint(fields=["token_hash"], condition=~models.Q(token_hash=""),
                                    name="invitation_token_unique"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values),
                                   name="invitation_role_valid"),
            models.CheckConstraint(condition=models.Q(status__in=InvitationStatus.values),
                                   name="invitation_status_valid"),
        ]
        indexes = [models.Index(fields=["user", "status"], name="invitation_user_status")]
        ordering = ["-created_at", "-id"]

    @staticmethod
    def open_at(now) -> models.Q:
        """Invitations still open at ``now``: neither answered nor expired."""
        return models.Q(status=InvitationStatus.OPEN, expires_at__gt=now)

    def __str__(self):
        return f"invitation of {self.username} to {self.project} as {self.role}"

    @property
    def state(self) -> str:
        """The status, with an open invitation past its expiry read as expired."""
        if self.status == InvitationStatus.OPEN and self.expires_at <= timezone.now():
            return InvitationStatus.EXPIRED
        return self.status


def hash_token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """A personal API token. Only its sha256 is stored; the key is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise a token")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=list, help_text="read, write and/or approve")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class RateLimit(models.Model):
    """A rate that replaces the portal-wide one for one account and one scope of limited
    writes: a high-volume integration (a service sending feedback from production, a load
    test's own user) is given more, without lifting the limit for anyone else (decision 69).
    Staff set them in the admin, which audits every change."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="rate_limits")
    scope = models.CharField(max_length=16, help_text="tokens, uploads, explain or feedback")
    rate = models.CharField(max_length=32, help_text='Requests per period, e.g. "6000/min"')
    reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "scope"],
                                               name="one_rate_limit_per_user_scope")]

    def __str__(self):
        return f"{self.user} · {self.scope}: {self.rate}"

    def clean(self):
        from django.core.exceptions import ValidationError

        from portal.api.throttling import parse_rate, scopes

        if self.scope not in scopes():
            raise ValidationError({"scope": f"unknown scope {self.scope!r}; one of "
                                            f"{', '.join(sorted(scopes()))}"})
        try:
            parse_rate(self.rate)
        except ValueError as e:
            raise ValidationError({"rate": str(e)}) from e
