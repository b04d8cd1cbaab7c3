"""Managing retraining rules: project contributors and owners, audited.

A rule is checked as a whole on every change (``_check``): its condition's numbers, its
environment (the model's project's), its target (one the operator configured, or
``webhook``) and the run's parameters for that target's kind, within what the operator
allows; a webhook's address passes the notifications' public-address rule. The first
problem is a ``ValidationFailed`` naming the field, and nothing is saved.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.db import IntegrityError, transaction

from ops.retraining import TargetRefused
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import Conflict, ValidationFailed
from portal.registry.services import refuse_archived
from portal.releases.models import Environment
from portal.retraining import targets
from portal.retraining.choices import WEBHOOK, Condition
from portal.retraining.models import RetrainingRule

EDITABLE = ("name", "condition", "environment", "for_minutes", "min_accuracy", "min_outcomes",
            "target", "params", "cooldown_minutes", "active")
MAX_MINUTES = 30 * 24 * 60


def _minutes(value, field: str, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_MINUTES:
        raise ValidationFailed(f"{field} must be a whole number of minutes from {low} to "
                               f"{MAX_MINUTES}", field=field)


def _check_condition(rule: RetrainingRule) -> None:
    if rule.condition not in Condition.values:
        raise ValidationFailed(f"condition must be one of {', '.join(Condition.values)}",
                               field="condition")
    _minutes(rule.for_minutes, "for_minutes", 1)
    _minutes(rule.cooldown_minutes, "cooldown_minutes", 0)
    if rule.condition == Condition.ACCURACY:
        accuracy = rule.min_accuracy
        if not isinstance(accuracy, int | float) or isinstance(accuracy, bool) \
                or not 0 < accuracy <= 1:
            raise ValidationFailed("min_accuracy is the rate (above 0, at most 1) below which "
                                   "the model is retrained, e.g. 0.85", field="min_accuracy")
        if not isinstance(rule.min_outcomes, int) or rule.min_outcomes < 1:
            raise ValidationFailed("min_outcomes must be at least 1", field="min_outcomes")


def _check(rule: RetrainingRule) -> None:
    rule.name = (rule.name or "").strip()
    if not rule.name or len(rule.name) > 100:
        raise ValidationFailed("give the rule a name of at most 100 characters, e.g. "
                               "'drift in production'", field="name")
    _check_condition(rule)
    if rule.environment is not None and rule.environment.project_id != rule.model.project_id:
        raise ValidationFailed("the environment must be one of the model's project",
                               field="environment")
    try:
        rule.params = targets.check_params(rule.target, rule.params)
    except TargetRefused as e:
        field = "target" if e.code == "unknown_target" else "params"
        raise ValidationFailed(e.detail, code="invalid_rule", field=field) from e
    if rule.target == WEBHOOK:
        from portal.notifications.services import private_refusal

        url = rule.params["url"]
        refusal = private_refusal(url) if url.startswith(("http://", "https://")) \
            else "give an http:// or https:// address"
        if refusal:
            raise ValidationFailed(f"params.url: {refusal}", code="private_address",
                                   field="params")


def _audited(rule: RetrainingRule, fields) -> dict:
    """What the trail keeps: a webhook's address by its host only (paths carry tokens)."""
    found = {}
    for name in fields:
        value = getattr(rule, name)
        if name == "environment":
            value = value.name if value else None
        elif name == "params" and isinstance(value, dict) and "url" in value:
            parts = urlsplit(str(value["url"]))
            value = {**value, "url": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"}
        found[name] = value
    return found


def _save(rule: RetrainingRule, action: str, changes: dict, user) -> None:
    try:
        with transaction.atomic():
            rule.save()
            audit.record(user, action, rule, project_id=rule.model.project_id,
                         object_repr=f"retraining rule {rule.name} of {rule.model.name}",
                         changes=changes)
    except IntegrityError as e:
        raise Conflict(f"{rule.model.name} already has a retraining rule named {rule.name!r}",
                       code="duplicate_rule", field="name") from e


def _environment(model, value) -> Environment | None:
    if value in (None, ""):
        return None
    if isinstance(value, Environment):
        return value
    found = Environment.objects.filter(project_id=model.project_id, name=value).first() \
        if isinstance(value, str) else None
    if found is None:
        raise ValidationFailed(f"project {model.project.slug} has no environment {value!r}",
                               field="environment")
    return found


def create_rule(user, model, **fields) -> tuple[RetrainingRule, str]:
    """Create a rule; return it with a webhook rule's signing secret ("" otherwise), which
    the person is shown now (it can be derived again, but is never listed)."""
    require_role(user, model.project, Role.CONTRIBUTOR, "manage retraining rules")
    refuse_archived(model)
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationFailed(f"unknown fields {', '.join(sorted(unknown))}")
    fields["environment"] = _environment(model, fields.get("environment"))
    rule = RetrainingRule(model=model, created_by=user, **fields)
    _check(rule)
    _save(rule, "retraining_rule.create", _audited(rule, EDITABLE), user)
    return rule, targets.webhook_secret(rule.pk) if rule.target == WEBHOOK else ""


def update_rule(user, rule: RetrainingRule, **fields) -> RetrainingRule:
    require_role(user, rule.model.project, Role.CONTRIBUTOR, "manage retraining rules")
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationFailed(f"cannot change {', '.join(sorted(unknown))}")
    if "environment" in fields:
        fields["environment"] = _environment(rule.model, fields["environment"])
    before = _audited(rule, fields)
    for name, value in fields.items():
        setattr(rule, name, value)
    _check(rule)
    _save(rule, "retraining_rule.update", audit.diff(before, _audited(rule, fields)), user)
    return rule


def delete_rule(user, rule: RetrainingRule) -> None:
    """Delete a rule; its triggers stay (with the rule's name) for the lineage."""
    require_role(user, rule.model.project, Role.CONTRIBUTOR, "manage retraining rules")
    with transaction.atomic():
        audit.record(user, "retraining_rule.delete", rule, project_id=rule.model.project_id,
                     object_repr=f"retraining rule {rule.name} of {rule.model.name}",
                     changes=_audited(rule, ("name", "condition", "target")))
        rule.delete()
