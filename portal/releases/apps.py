from django.apps import AppConfig
from django.core import checks


class ReleasesConfig(AppConfig):
    name = "portal.releases"
    label = "releases"
    verbose_name = "Releases"

    def ready(self):
        checks.register(check_targets, checks.Tags.compatibility)
        from portal.releases import archive

        archive.register()  # what refuses archiving: rollouts in progress, open requests


def check_targets(app_configs=None, **kwargs):
    """The operator's MODELGATE_TARGETS must parse: a bad one would only show when a
    rollout started."""
    from portal.errors import DomainError
    from portal.releases.targets import targets

    try:
        targets()
    except DomainError as e:
        return [checks.Error(e.detail, hint="See README § Configuration, MODELGATE_TARGETS.",
                             id="modelgate.E020")]
    return []
