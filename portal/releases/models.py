from django.conf import settings
from django.db import models

from portal.registry.models import Archivable, ModelVersion, Project, name_validator
from portal.releases.choices import (
    BackendKind,
    Decision,
    RequestStatus,
    Strategy,
    backend_choices,
    strategy_choices,
)
from portal.reversing import reverse


class Environment(Archivable):
    """A deployment target (staging, production) with its protection rules.

    ``settings`` holds the backend's non-secret configuration (ports, namespace, region,
    image...); credentials come from the worker's process environment, never from here.
    """

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="environments")
    name = models.CharField(max_length=64, validators=[name_validator])
    description = models.TextField(blank=True)
    backend = models.CharField(max_length=16, choices=backend_choices,
                               default=BackendKind.LOCAL)
    target = models.CharField(
        max_length=64, blank=True,
        help_text="The operator's deployment target (MODELGATE_TARGETS) this environment "
                  "deploys to; blank: the first target of its backend")
    settings = models.JSONField(
        default=dict, blank=True,
        help_text="Per-project backend settings the target allows (e.g. a namespace)")
    required_approvals = models.PositiveSmallIntegerField(
        default=1, help_text="Approvals needed from approvers other than the requester.")
    gates = models.JSONField(default=list, blank=True,
                             help_text='Metric rules, e.g. [{"metric": "roc_auc", "min": 0.9}]')
    approval_ttl_hours = models.PositiveIntegerField(
        default=72, help_text="Approvals older than this no longer count.")
    release_alias = models.CharField(
        max_length=64, blank=True, default="", validators=[name_validator],
        help_text="The model's alias a release that succeeds here moves to the version "
                  "released (production: champion); blank: none")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="environment_unique_name"),
        ]

    def __str__(self):
        return f"{self.project.slug}/{self.name}"

    def get_absolute_url(self):
        return reverse("releases:environment", args=[self.project.slug, self.name])


class EndpointSlot(models.Model):
    """A local endpoint's port, allocated by the portal from its target's range. Unique
    across every project: no environment can be given, or take, another's port."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE,
                                    related_name="endpoint_slots")
    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.CASCADE,
                              related_name="+")
    port = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "model"], name="endpoint_slot_unique"),
        ]

    def __str__(self):
        return f"{self.environment} {self.model_id} :{self.port}"


class ApprovalRequest(models.Model):
    """A request to release a version to an environment with a strategy."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT,
                                related_name="approval_requests")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT,
                                    related_name="approval_requests")
    strategy = models.CharField(max_length=16, choices=strategy_choices,
                                default=Strategy.CANARY)
    strategy_params = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, help_text="Why this version should be released")
    breaking_change = models.BooleanField(
        default=False,
        help_text="The requester says the version's inputs differ from those of what serves "
                  "now: it goes out directly or by blue/green only, and approvers must "
                  "acknowledge it")
    interface_changes = models.JSONField(
        default=list, blank=True,
        help_text='How the version\'s inputs differed from each version serving when it was '
                  'requested: [{"version": 3, "differences": ["missing feature age ..."]}]')
    status = models.CharField(max_length=16, choices=RequestStatus.choices,
                              default=RequestStatus.OPEN)
    gate_results = models.JSONField(default=list, blank=True)
    gates_passed = models.BooleanField(default=False)
    # When the gates were last judged (on request, and again when what they compare with or
    # what was measured changed): only approvals given after it count.
    judged_at = models.DateTimeField(null=True, blank=True)
    champion = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", help_text="The champion when requested")
    release_diff = models.JSONField(
        default=dict, blank=True,
        help_text="explainability.diff.release_diff of the version against the champion, "
                  "with status (pending, ready, failed) and reason")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                     on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open request per version and environment: a second would split the reviews.
            models.UniqueConstraint(fields=["version", "environment"],
                                    condition=models.Q(status="open"),
                                    name="request_one_open_per_target"),
        ]

    def __str__(self):
        return f"release {self.version} to {self.environment.name}"

    def get_absolute_url(self):
        return reverse("releases:request", args=[self.pk])


class Review(models.Model):
    """One approver's decision on a request, with the required comment."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["request", "reviewer"], name="review_one_per_reviewer"),
        ]

    def __str__(self):
        return f"{self.reviewer} {self.decision}d {self.request}"


class Deployment(models.Model):
    """A rollout of a candidate version on an environment's endpoint for one model.

    ``spec`` and ``state`` are ``ops.rollout.RolloutSpec`` / ``RolloutState`` as JSON; the
    state machine decides, this row remembers. ``step_id`` is the claim: a decision is only
    recorded by the update that finds the ``step_id`` it decided from, so two workers (or a
    worker and a person) can never both move the same step.
    """

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT,
                                    related_name="deployments")
    request = models.OneToOneField(ApprovalRequest, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="deployment")
    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.PROTECT,
                              related_name="deployments")
    candidate = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    stable = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    endpoint = models.CharField(max_length=120)
    strategy = models.CharField(max_length=16, choices=strategy_choices)
    spec = models.JSONField()
    state = models.JSONField()
    step_id = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, db_index=True)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the backend was first seen serving this rollout's own plan: before it, the
    # endpoint's "candidate" and "stable" series hold other versions' traffic (variants are
    # roles), so no analysis window reaches back past it.
    serving_since = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.model.name} v{self.candidate.number} on {self.environment.name}"

    def get_absolute_url(self):
        return reverse("releases:deployment", args=[self.pk])


class DeploymentEvent(models.Model):
    """One step of a deployment's log: a decision, a command, or a backend's answer."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    event = models.CharField(max_length=32)
    status = models.CharField(max_length=20)
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=150, blank=True)
    verdict = models.CharField(max_length=16, blank=True)
    measurements = models.JSONField(default=list, blank=True)
    queries = models.JSONField(default=dict, blank=True)
    weights = models.JSONField(default=dict, blank=True, help_text="Traffic shares applied")
    generation = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.deployment} {self.event}"

from portal.releases.multimodel_models import MultiModelEndpoint, MultiModelMember  # noqa: E402, F401 - decision 68
