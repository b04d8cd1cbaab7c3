"""Retraining rules, the triggers they fire, and the versions those runs registered.

A rule of a model says when to ask for retraining (``condition``) and where (``target``:
a name in the operator's ``MODELGATE_RETRAINING_TARGETS``, or ``webhook`` for the
project's own signed webhook) with the run's parameters. Credentials are never in a row:
the operator's targets hold them, and a webhook's signing secret is derived from the
server's secret and the rule (``services.webhook_secret``).
"""

from django.conf import settings
from django.db import models

from portal.retraining.choices import Condition, TriggerState, kind_choices
from portal.reversing import reverse


class RetrainingRule(models.Model):
    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.CASCADE,
                              related_name="retraining_rules")
    name = models.CharField(max_length=100)
    condition = models.CharField(max_length=16, choices=Condition.choices)
    environment = models.ForeignKey("releases.Environment", null=True, blank=True,
                                    on_delete=models.CASCADE, related_name="+",
                                    help_text="Only this environment (empty: any)")
    for_minutes = models.PositiveIntegerField(
        default=30, help_text="drift: how long it must have fired; accuracy: the window "
                              "of feedback measured")
    min_accuracy = models.FloatField(null=True, blank=True,
                                     help_text="accuracy: retrain below this rate (0 to 1)")
    min_outcomes = models.PositiveIntegerField(
        default=100, help_text="accuracy: judge only with this many outcomes in the window")
    target = models.CharField(max_length=64, help_text="an operator's retraining target, or "
                                                       "'webhook'")
    params = models.JSONField(default=dict, blank=True,
                              help_text="what the run needs (dag_id; pipeline_id and "
                                        "pipeline_version_id; workflow and ref; url)")
    cooldown_minutes = models.PositiveIntegerField(
        default=24 * 60, help_text="after a trigger, the rule waits this long")
    active = models.BooleanField(default=True)
    # The cooldown's claim: set by the conditional UPDATE that fires the rule.
    last_triggered_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="retraining_rule_unique_name"),
        ]

    def __str__(self):
        return f"{self.model} / {self.name}"


class RetrainingTrigger(models.Model):
    """One request for a retraining run, with its evidence and how sending it went.

    ``attempts`` and ``next_attempt_at`` are the claim, as a webhook delivery's: an attempt
    is made only by the UPDATE that still finds the attempt count it read.
    """

    rule = models.ForeignKey(RetrainingRule, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="triggers")
    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.CASCADE,
                              related_name="retraining_triggers")
    environment = models.ForeignKey("releases.Environment", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    serving_version = models.ForeignKey("registry.ModelVersion", null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+")
    alert = models.ForeignKey("monitoring.Alert", null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+",
                              help_text="the incident's lead alert (drift)")
    rule_name = models.CharField(max_length=100)
    condition = models.CharField(max_length=16, choices=Condition.choices)
    target = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=kind_choices)
    params = models.JSONField(default=dict)
    reason = models.CharField(max_length=300)
    evidence = models.JSONField(default=dict)
    state = models.CharField(max_length=10, choices=TriggerState.choices,
                             default=TriggerState.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    run_id = models.CharField(max_length=200, blank=True)
    run_url = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+",
                                   help_text="who fired it by hand (empty: the rule)")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model", "-created_at"], name="trigger_model_recent"),
            models.Index(fields=["state", "next_attempt_at"], name="trigger_due"),
        ]

    def __str__(self):
        return f"retraining trigger {self.pk} of {self.model}"

    def get_absolute_url(self):
        return reverse("retraining:trigger", args=[self.pk])

    @property
    def run_name(self) -> str:
        return f"modelgate-trigger-{self.pk}"


class TriggerClaim(models.Model):
    """An alert's episode that fired a trigger: one run per incident.

    Unique per (alert, episode start): two evaluations seeing the same incident at once
    both insert its episodes, and the database lets one of them through.
    """

    alert = models.ForeignKey("monitoring.Alert", on_delete=models.CASCADE, related_name="+")
    episode_start = models.DateTimeField()
    trigger = models.ForeignKey(RetrainingTrigger, on_delete=models.CASCADE,
                                related_name="claims")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["alert", "episode_start"],
                                    name="trigger_claim_unique_episode"),
        ]

    def __str__(self):
        return f"alert {self.alert_id} since {self.episode_start:%Y-%m-%d %H:%M}"


class RetrainedVersion(models.Model):
    """A version a trigger's run registered (``--triggered-by``): its lineage."""

    version = models.OneToOneField("registry.ModelVersion", on_delete=models.CASCADE,
                                   related_name="retrained_because")
    trigger = models.ForeignKey(RetrainingTrigger, on_delete=models.CASCADE,
                                related_name="versions")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.version} because of trigger {self.trigger_id}"
