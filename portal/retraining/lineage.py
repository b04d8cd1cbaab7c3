"""A version registered by a retraining run, linked to the trigger that asked for it.

The run registers its model with ``modelgate register … --triggered-by <trigger id>`` (the
metadata's ``triggered_by``); the registry announces the new version
(``portal.registry.signals.version_registered``) inside its transaction and ``link_version``
records the link there, or refuses the registration when the trigger is not the model's.
"""

from __future__ import annotations

from portal.audit import services as audit
from portal.errors import ValidationFailed
from portal.prepared import Prepared
from portal.retraining.models import RetrainedVersion, RetrainingTrigger


def link_version(user, version, trigger_id) -> RetrainedVersion:
    """Record that ``version`` was trained because of trigger ``trigger_id`` (in the
    registration's transaction)."""
    if not isinstance(trigger_id, int) or isinstance(trigger_id, bool):
        raise ValidationFailed("triggered_by must be a retraining trigger's id, e.g. 12",
                               field="triggered_by")
    trigger = RetrainingTrigger.objects.filter(pk=trigger_id, model_id=version.model_id).first()
    if trigger is None:
        raise ValidationFailed(f"model {version.model.name} has no retraining trigger "
                               f"{trigger_id}", code="unknown_trigger", field="triggered_by")
    link = RetrainedVersion.objects.create(version=version, trigger=trigger)
    audit.record(user, "version.retrained", version, project_id=version.model.project_id,
                 changes={"trigger": trigger.pk, "reason": trigger.reason,
                          "alert": trigger.alert_id})
    return link


def retrained_because(version) -> RetrainedVersion | None:
    """The trigger ``version`` was registered for, with its alert and the version that
    served then, or None: what the version page says of it
    (``retraining/inc/version_trigger.html``), and no other column."""
    # At most one row (one to one): no ordering to compile, as ``first()`` would add.
    return _retrained.first(version.pk)


@Prepared
def _retrained(version_id: int):
    return (RetrainedVersion.objects.select_related("trigger__alert", "trigger__serving_version")
            .only(*RETRAINED_BECAUSE).filter(version_id=version_id)[:1])


RETRAINED_BECAUSE = ("version", "trigger__condition", "trigger__reason", "trigger__run_url",
                     "trigger__alert__name", "trigger__serving_version__number")
