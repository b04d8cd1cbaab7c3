from django.apps import AppConfig
from django.core import checks


class ReleasesConfig(AppConfig):
    name = "portal.releases"
    label = "releases"
    verbose_name = "Releases"

    def ready(self):
        checks.register(check_targets, checks.Tags.compatibility)
        from portal.registry.signals import alias_moved
        from portal.releases import archive, multimodel

        archive.register()  # what refuses archiving: rollouts in progress, open requests
        # A moved alias reaches the multi-model endpoints following it (decision 68).
        alias_moved.connect(multimodel.on_alias_moved, dispatch_uid="releases.follow_alias")


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
