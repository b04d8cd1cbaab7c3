"""The registry's model and version pages (routed by ``portal/registry/urls.py`` under
their own names), with what serves them now: that is what the backends observe
(``serving``), so these views are the releases app's and add it to the registry's."""

from django.contrib.auth.decorators import login_required

from portal.registry import views as registry
from portal.releases import serving


@login_required
def model_detail(request, slug, name, more_context=None):
    """``more_context(model)``: what an app above adds (retraining's rules)."""
    return registry.model_detail(
        request, slug, name,
        more_context=lambda model: {"serving": serving.by_environment(model),
                                    **(more_context(model) if more_context else {})})


@login_required
def version_detail(request, slug, name, number, more_context=None):
    return registry.version_detail(
        request, slug, name, number,
        more_context=lambda version: {"serving": serving.serving_version(version),
                                      **(more_context(version) if more_context else {})})
