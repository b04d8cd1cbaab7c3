"""Visibility for prepared queries (``portal.prepared``): who reads, as a plain value, and
the filter that gives them what ``services.filter_visible`` gives, in one statement whoever
reads (the memberships as a subquery on the user's id), so it is compiled once."""

from django.db.models import QuerySet

from portal.accounts.models import Membership
from portal.errors import NOT_FOUND, NotFound


def viewer_of(user) -> int | None:
    """Who reads, for a prepared query (``portal.prepared``): None for someone who may read
    every project (staff), otherwise the user's id, given to ``visible_by``."""
    if not getattr(user, "is_authenticated", False):
        raise NotFound(NOT_FOUND)
    return None if user.is_staff else user.pk


class Reader:
    """Stands in for a user in ``services.filter_visible`` inside a prepared query's build:
    one who may read the projects ``ids`` (a tuple; None: every project), as
    ``memberships_read_once`` gives them."""

    is_authenticated = True

    def __init__(self, ids: tuple | None):
        self.is_staff = ids is None
        self._modelgate_visible_now = None if ids is None else list(ids)


def visible_by(queryset: QuerySet, viewer: int | None, project_field: str = "project"):
    """``filter_visible`` for a viewer from ``viewer_of``: one statement whoever reads (the
    memberships as a subquery on the user's id), so it is compiled once."""
    if viewer is None:
        return queryset
    return queryset.filter(**{f"{project_field}__in": Membership.objects.filter(
        user_id=viewer).values("project_id")})
