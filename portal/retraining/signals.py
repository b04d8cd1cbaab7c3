"""The registry's ``version_registered``, received: a version naming its trigger is linked."""

from django.dispatch import receiver

from portal.registry.signals import version_registered


@receiver(version_registered, dispatch_uid="retraining.link_version")
def _link_version(sender, version, user, triggered_by=None, **kwargs):
    if triggered_by is not None:
        from portal.retraining.lineage import link_version

        link_version(user, version, triggered_by)
