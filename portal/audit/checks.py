"""System checks of the audit trail's settings."""

from django.conf import settings
from django.core.checks import Error, Warning, register

from portal.audit import keys


@register()
def check_audit_keys(app_configs, **kwargs):
    """Malformed ``MODELGATE_AUDIT_KEYS`` is an error: nothing could be audited. The
    production profile without it is a warning, like ``modelgate.W101``: the chain is then
    keyed with a key derived from ``DJANGO_SECRET_KEY``, which is outside the database too
    but serves other purposes and is rotated for other reasons."""
    try:
        keyring = keys.keyring()
    except keys.AuditKeyError as e:
        return [Error(str(e), id="modelgate.E030",
                      hint="MODELGATE_AUDIT_KEYS reads '<key id>:<secret>,<old id>:<old "
                           "secret>'; see docs/operations.md.")]
    problems = []
    if settings.MODELGATE_AUDIT_CHECKPOINT_SECONDS <= 0:
        problems.append(Error("MODELGATE_AUDIT_CHECKPOINT_SECONDS must be positive",
                              id="modelgate.E031"))
    if settings.MODELGATE_PRODUCTION and keyring.derived_only:
        problems.append(Warning(
            "the audit chain is signed with a key derived from DJANGO_SECRET_KEY: "
            "MODELGATE_AUDIT_KEYS is not set", id="modelgate.W102",
            hint="Set MODELGATE_AUDIT_KEYS (or MODELGATE_AUDIT_KEYS_FILE) to "
                 "'<key id>:<secret>'; keep 'secret-key' in the list while events it signed "
                 "must verify. See docs/operations.md."))
    return problems
