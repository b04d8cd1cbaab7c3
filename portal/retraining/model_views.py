"""The model and version pages with retraining added: the model's rules and triggers, and
the trigger a version was retrained because of. Routed by ``portal/registry/urls.py`` in
place of the releases app's, which they extend (what serves stays theirs)."""

from django.contrib.auth.decorators import login_required

from portal.accounts.choices import Role
from portal.accounts.services import has_role
from portal.releases import model_views as releases_pages
from portal.retraining import queries
from portal.retraining.lineage import retrained_because


@login_required
def model_detail(request, slug, name):
    def retraining(model):
        return {"retraining": {
            "rules": queries.rules_of(model), "triggers": queries.triggers_of(model),
            "can_manage": has_role(request.user, model.project, Role.CONTRIBUTOR)}}

    return releases_pages.model_detail(request, slug, name, more_context=retraining)


@login_required
def version_detail(request, slug, name, number):
    return releases_pages.version_detail(
        request, slug, name, number,
        more_context=lambda version: {"retrained": retrained_because(version)})
