"""Retraining targets: the orchestrators the operator connects, and a project's own webhook.

``MODELGATE_RETRAINING_TARGETS`` (JSON, or ``_FILE``) names them:
``{"airflow-prod": {"kind": "airflow", "url": "https://airflow.internal", "username": "…",
"password": "…", "allowed": {"dag_id": ["retrain_churn"]}}}``. Addresses and credentials are
the operator's, as deployment targets are (decision 67): a rule may only name a target and
give the run's parameters (``ops.retraining`` lists them per kind), within ``allowed``. The
name ``webhook`` is reserved: a rule naming it posts to its own ``url``, signed like the
notifications' webhooks, with a secret derived from the server's secret and the rule — no
row holds it.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import salted_hmac

from ops import retraining
from ops.retraining import Target, TargetRefused
from portal.retraining.choices import WEBHOOK

SECRET_SALT = "modelgate.retraining.webhook"


def configured() -> dict[str, dict]:
    """The operator's targets, as configured (``{}`` when none)."""
    found = settings.MODELGATE_RETRAINING_TARGETS or {}
    return found if isinstance(found, dict) else {}


def problems() -> list[str]:
    """What is wrong with the operator's targets (the system check shows them)."""
    found = settings.MODELGATE_RETRAINING_TARGETS
    if found is None:
        return []
    if not isinstance(found, dict):
        return ["MODELGATE_RETRAINING_TARGETS must be a JSON object of named targets"]
    said = []
    for name, target in found.items():
        if name == WEBHOOK:
            said.append(f"target name {WEBHOOK!r} is reserved for projects' own webhooks")
            continue
        try:
            _instance(name, target)
        except TargetRefused as e:
            said.append(f"target {name}: {e.detail}")
    return said


def _instance(name: str, target, extra: dict | None = None) -> Target:
    if not isinstance(target, dict):
        raise TargetRefused(f"target {name} must be a JSON object", code="bad_target")
    cls = retraining.target_class(str(target.get("kind", "")))
    if cls.kind == WEBHOOK:
        raise TargetRefused("webhook targets are a rule's own (target 'webhook')",
                            code="bad_target")
    allowed = target.get("allowed", {})
    if not isinstance(allowed, dict):
        raise TargetRefused("allowed must map parameter names to lists", code="bad_target")
    return cls(dict(target, **(extra or {})))


def names() -> list[tuple[str, str]]:
    """(name, label) of what a rule may name: the operator's targets, then ``webhook``."""
    kinds = dict(retraining.choices())
    return [(name, f"{name} ({kinds.get(t.get('kind'), t.get('kind'))})")
            for name, t in configured().items() if isinstance(t, dict)] + [
        (WEBHOOK, "webhook (this project's own, signed)")]


def kind_of(target: str) -> str:
    """The kind of the target a rule names; ``TargetRefused`` naming the valid ones."""
    if target == WEBHOOK:
        return WEBHOOK
    found = configured().get(target)
    if not isinstance(found, dict):
        valid = ", ".join([n for n, _ in names()])
        raise TargetRefused(f"unknown retraining target {target!r}; this installation has: "
                            f"{valid}", code="unknown_target")
    return str(found.get("kind", ""))


def check_params(target: str, params) -> dict:
    """The rule's parameters for ``target``, checked (``TargetRefused`` names the problem)."""
    kind = kind_of(target)
    allowed = {} if target == WEBHOOK else configured()[target].get("allowed") or {}
    return retraining.target_class(kind).check_params(params or {}, allowed)


def webhook_secret(rule_id: int) -> str:
    """The signing secret of a webhook rule: derived, never stored (``DJANGO_SECRET_KEY``
    changing changes it)."""
    return salted_hmac(SECRET_SALT, f"rule:{rule_id}", algorithm="sha256").hexdigest()


def build(target: str, *, rule_id: int | None, project: str) -> Target:
    """The ``ops`` target that sends a trigger's run."""
    if target == WEBHOOK:
        from portal.notifications.services import private_refusal, sign

        if rule_id is None:  # its secret went with the rule: the receiver could not check it
            raise TargetRefused("the webhook rule was deleted before its trigger was sent",
                                code="rule_deleted")
        return retraining.target_class(WEBHOOK)({
            "secret": webhook_secret(rule_id), "sign": sign, "refuse": private_refusal,
            "project": project,
            # The peer connected to is checked too (DNS rebinding), as the address rule says.
            "public_only": not settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE})
    kind_of(target)
    return _instance(target, configured()[target])
