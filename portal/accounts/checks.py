"""System checks of account settings."""

from django.core.checks import Warning, register


@register()
def check_mail_links(app_configs, **kwargs):
    """Mail configured in the production profile while ``MODELGATE_BASE_URL`` is still a
    loopback address (its default when neither it nor ``DJANGO_CSRF_TRUSTED_ORIGINS`` is
    set): invitation links are then shown to the inviting owner instead of mailed, and the
    links in notification e-mails lead nowhere. A warning, as modelgate.W101: the portal
    works, and ``check --deploy --fail-level WARNING`` fails on it."""
    from portal.accounts.mail import base_url_for_mail, mail_configured

    if mail_configured() and base_url_for_mail() is None:
        return [Warning(
            "mail is configured but MODELGATE_BASE_URL is a loopback address: links in "
            "e-mails would lead people to their own machine, so invitations are not mailed "
            "(the owner is shown the link) and notification links do not work",
            id="modelgate.W103",
            hint="Set MODELGATE_BASE_URL to the address people open the portal at, e.g. "
                 "https://modelgate.example.com (or DJANGO_CSRF_TRUSTED_ORIGINS).")]
    return []
