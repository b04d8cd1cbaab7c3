"""A/B experiments: the outcome of every prediction fed back, kept as running aggregates.

One ``Experiment`` per A/B deployment. Feedback rows (``Outcome``) are unique per prediction
id, which makes feedback idempotent; ``VariantTotal`` (per variant) and ``OutcomeBucket``
(per variant and ten minutes) hold n, sum and sum of squares, updated in the same transaction as
the rows they count, so a readout reads two rows whatever the traffic.
"""

from django.conf import settings
from django.db import models

from portal.experiments.choices import DecisionChoice, OutcomeKind
from portal.reversing import reverse


class Experiment(models.Model):
    # By name: releases import experiments, never the reverse.
    deployment = models.OneToOneField("releases.Deployment", on_delete=models.PROTECT,
                                      related_name="experiment")
    metric = models.CharField(max_length=64, default="conversion",
                              help_text="What the outcome measures, in the readout's words")
    kind = models.CharField(max_length=8, choices=OutcomeKind.choices)
    higher_is_better = models.BooleanField(default=True)
    split = models.FloatField(help_text="The candidate's configured share of units")
    key_id = models.CharField(max_length=40, db_index=True,
                              help_text="Key id of the endpoint's signed prediction ids")
    generation = models.PositiveIntegerField(
        help_text="Plan generation that splits traffic: predictions of the test carry it")
    tau2 = models.FloatField(null=True, blank=True,
                             help_text="mSPRT mixing variance, fixed at the first readout "
                                       "with enough units")
    sequential_p = models.FloatField(null=True, blank=True,
                                     help_text="Running minimum of the always-valid p-value")
    decision = models.CharField(max_length=8, choices=DecisionChoice.choices, blank=True,
                                help_text="The final decision (promote or keep); empty while "
                                          "the test runs or was extended")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["key_id", "generation"],
                                    name="experiment_unique_generation"),
        ]

    def __str__(self):
        return f"A/B test of {self.deployment}"

    def get_absolute_url(self):
        return reverse("experiments:experiment", args=[self.pk])


class ExperimentDecision(models.Model):
    """A person's decision on an experiment with its comment (extend may come several times
    before the final promote or keep)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE,
                                   related_name="decisions")
    decision = models.CharField(max_length=8, choices=DecisionChoice.choices)
    comment = models.TextField()
    extend_hours = models.FloatField(null=True, blank=True)
    readout = models.JSONField(default=dict, help_text="The readout the decision was made on")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.decision} on {self.experiment}"


class Outcome(models.Model):
    """The outcome of one prediction; the unique id makes feedback idempotent."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE,
                                   related_name="outcomes")
    prediction_id = models.CharField(max_length=200, unique=True)
    variant = models.CharField(max_length=16)
    value = models.FloatField()
    received_at = models.DateTimeField()

    def __str__(self):
        return self.prediction_id


class VariantTotal(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="totals")
    variant = models.CharField(max_length=16)
    n = models.BigIntegerField(default=0)
    total = models.FloatField(default=0.0)
    total_sq = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "variant"], name="total_per_variant"),
        ]

    def __str__(self):
        return f"{self.variant}: n={self.n}"


BUCKET_SECONDS = 600


class OutcomeBucket(models.Model):
    """Outcomes received in one ten-minute period, per variant: the readout over time."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="buckets")
    variant = models.CharField(max_length=16)
    starts_at = models.DateTimeField()
    n = models.BigIntegerField(default=0)
    total = models.FloatField(default=0.0)
    total_sq = models.FloatField(default=0.0)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "variant", "starts_at"],
                                    name="bucket_per_variant_period"),
        ]

    def __str__(self):
        return f"{self.variant} at {self.starts_at:%Y-%m-%d %H:%M}: n={self.n}"
