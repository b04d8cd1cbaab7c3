"""The dashboard's lists, prepared (``portal.prepared``): the most visited page reads
nine lists, and compiling their SQL was a third of its CPU. Each takes the projects the
person may read (``ids``: a tuple, None for every project) as ``memberships_read_once``
gives them, and stands a ``Reader`` in for the person in the apps' own querysets, so the
filters are theirs."""

from __future__ import annotations

from django.db.models import Count

from portal.accounts.models import Invitation
from portal.accounts.visibility import Reader
from portal.monitoring import queries as monitoring_queries
from portal.prepared import Prepared
from portal.registry import queries
from portal.registry.choices import VersionStatus
from portal.releases import queries as release_queries
from portal.releases.choices import RequestStatus
from portal.releases.deployments import ACTIVE

# The columns the dashboard's rows show: Django compiles (and PostgreSQL sends) every column
# of every joined table unless told otherwise.
_VERSION_ROW = ("number", "label", "status", "status_reason", "artifact_format", "created_at",
                "model__name", "model__project__slug", "created_by__username")
_REQUEST_ROW = ("created_at", "gates_passed", "version__number", "version__label",
                "version__model__name", "version__model__project__slug", "environment__name")
_ROLLOUT_ROW = ("status", "strategy", "environment__name", "model__name", "candidate__number")
_INVITATION_ROW = ("role", "project__name", "invited_by__username")


def live_versions(ids):
    """What is archived (or in an archived project) is out of the dashboard, as of every
    list; the versions counted are those of the models counted."""
    return queries.version_rows_for(Reader(ids)).filter(
        model__archived_at__isnull=True, model__project__archived_at__isnull=True)


@Prepared
def status_counts(ids):
    return live_versions(ids).order_by().values_list("status").annotate(n=Count("id"))


@Prepared
def recent_versions(ids):
    return live_versions(ids).only(*_VERSION_ROW)[:10]


@Prepared
def attention(ids):
    return (live_versions(ids).only(*_VERSION_ROW)
            .filter(status__in=[VersionStatus.PENDING, VersionStatus.INVALID])[:5])


@Prepared
def models(ids):
    return (queries.model_rows_for(Reader(ids))
            .filter(archived_at__isnull=True, project__archived_at__isnull=True)
            .order_by("-created_at")[:8])


@Prepared
def open_requests(ids):
    return (release_queries.requests_for(Reader(ids))
            .filter(status=RequestStatus.OPEN).select_related(None)
            .select_related("version__model__project", "environment")
            .only(*_REQUEST_ROW).prefetch_related(None)[:5])


@Prepared
def active_rollouts(ids):
    return (release_queries.deployments_for(Reader(ids))
            .filter(status__in=ACTIVE).select_related(None)
            .select_related("environment", "model", "candidate").only(*_ROLLOUT_ROW)[:5])


@Prepared
def firing_alerts(ids):
    return monitoring_queries.firing_alerts_for(Reader(ids))


@Prepared
def open_invitations(user_id: int, now):
    """The in-portal notice of invitations (as ``services.open_invitations_to``)."""
    return (Invitation.objects.filter(Invitation.open_at(now), user_id=user_id)
            .select_related("project", "invited_by").only(*_INVITATION_ROW)[:5])
