"""System checks: configuration problems surface at start-up with an id."""

from django.conf import settings
from django.core.checks import Error, Warning, register

from ops.exceptions import StorageError


@register()
def check_artifact_store(app_configs, **kwargs):
    from portal.registry.storage import get_store

    if settings.MODELGATE_ARTIFACT_BUCKET:
        return []  # reachability of S3 is a readiness concern, not a start-up one
    try:
        get_store().ping()
    except StorageError as e:
        return [Error(f"artifact store unusable: {e}", id="modelgate.E001",
                      hint="Set MODELGATE_ARTIFACT_ROOT to a writable directory.")]
    return []


@register()
def check_limits(app_configs, **kwargs):
    problems = []
    if settings.MODELGATE_MAX_ARTIFACT_BYTES <= 0:
        problems.append(Error("MODELGATE_MAX_ARTIFACT_BYTES must be positive",
                              id="modelgate.E002"))
    if settings.CELERY_TASK_ALWAYS_EAGER and not settings.DEBUG:
        problems.append(Warning("CELERY_TASK_ALWAYS_EAGER runs artifact validation in the web "
                                "process; use it for tests only", id="modelgate.W001"))
    return problems
