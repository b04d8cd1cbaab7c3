from django.db import models


class Role(models.TextChoices):
    """Project roles, each including the rights of those before it."""

    VIEWER = "viewer", "Viewer"
    CONTRIBUTOR = "contributor", "Contributor"
    APPROVER = "approver", "Approver"
    OWNER = "owner", "Owner"


ROLE_RANK = {Role.VIEWER: 1, Role.CONTRIBUTOR: 2, Role.APPROVER: 3, Role.OWNER: 4}
