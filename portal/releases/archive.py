"""Archiving environments, and what releases refuse archiving for (decision 58).

The registry archives (``portal.registry.services.archive``); this module adds the
environment, which is the releases app's, and the refusals only releases know, registered
from ``ReleasesConfig.ready``: nothing is archived while a rollout of it is in progress or
a release request for it is open (409 ``rollout_in_progress``, ``open_release_request``).
An endpoint that already serves keeps serving: archiving hides, it stops nothing. A request
approved but not yet started does not start once its model or environment is archived
(``deployments.start_deployment`` takes the same row locks).
"""

from __future__ import annotations

from django.db.models import Q

from portal.errors import Conflict
from portal.registry.services import archive as registry_archive
from portal.releases.choices import RequestStatus
from portal.releases.models import ApprovalRequest, Deployment, Environment


def archive_environment(user, environment: Environment) -> Environment:
    """An owner's act; refused while a rollout runs there or a request to it is open."""
    return registry_archive.archive_object(user, environment)


def restore_environment(user, environment: Environment) -> Environment:
    return registry_archive.restore_object(user, environment)


def _refuse_if_busy(what: str, rollouts, requests) -> None:
    from portal.releases.deployments import ACTIVE  # it imports much of the app

    running = list(rollouts.filter(status__in=ACTIVE).values_list("pk", flat=True)[:5])
    if running:
        raise Conflict(f"{what} has a rollout in progress (deployment "
                       f"{', '.join(map(str, running))}); let it end or roll it back first",
                       code="rollout_in_progress")
    # Open, or approved and not started yet (its start would be refused, and a restore
    # would start it later on an old approval).
    pending = list(requests.filter(Q(status=RequestStatus.OPEN)
                                   | Q(status=RequestStatus.APPROVED, deployment__isnull=True))
                   .values_list("pk", flat=True)[:5])
    if pending:
        raise Conflict(f"{what} has an open release request ({', '.join(map(str, pending))}); "
                       "cancel or decide it first", code="open_release_request")


def refuse_busy_environment(environment: Environment) -> None:
    _refuse_if_busy(f"environment {environment}",
                    Deployment.objects.filter(environment=environment),
                    ApprovalRequest.objects.filter(environment=environment))


def refuse_busy_model(model) -> None:
    _refuse_if_busy(f"model {model}", Deployment.objects.filter(model=model),
                    ApprovalRequest.objects.filter(version__model=model))


def refuse_busy_project(project) -> None:
    _refuse_if_busy(f"project {project.slug}",
                    Deployment.objects.filter(environment__project=project),
                    ApprovalRequest.objects.filter(environment__project=project))


def register() -> None:
    """Called by ``ReleasesConfig.ready``."""
    registry_archive.refuse_archive_when("environment", refuse_busy_environment)
    registry_archive.refuse_archive_when("model", refuse_busy_model)
    registry_archive.refuse_archive_when("project", refuse_busy_project)
