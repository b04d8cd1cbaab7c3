"""System checks of monitoring settings."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def check_metrics_token(app_configs, **kwargs):
    """The production profile without ``MODELGATE_METRICS_TOKEN``: /metrics answers 403.

    A warning, not an error: /metrics fails closed either way, so nothing leaks, and an
    error would stop ``migrate`` (the upgrade's migration Job) and ``runserver`` over a
    monitoring setting. The warning shows in every management command's output and fails
    ``check --deploy --fail-level WARNING``; Prometheus shows the target down.
    """
    if settings.MODELGATE_PRODUCTION and not settings.MODELGATE_METRICS_TOKEN:
        return [Warning(
            "/metrics is closed: the production profile serves it only to a bearer of "
            "MODELGATE_METRICS_TOKEN, and none is set", id="modelgate.W101",
            hint="Set MODELGATE_METRICS_TOKEN (or MODELGATE_METRICS_TOKEN_FILE) and give "
                 "Prometheus the same token (authorization credentials_file); see "
                 "docs/operations.md.")]
    return []
