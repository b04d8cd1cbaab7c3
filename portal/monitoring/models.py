from django.conf import settings
from django.db import models
from django.utils import timezone

from portal.monitoring.choices import AlertSource, AlertState, Severity
from portal.reversing import reverse


class Alert(models.Model):
    """A condition Prometheus reported, one row per label set (``fingerprint``).

    The same condition firing again later reopens its row (a new episode: new ``starts_at``,
    acknowledgement cleared); a silence outlives episodes until it expires. ``project``,
    ``model`` and ``environment`` are found from the alert's labels when they name objects
    the portal knows; an alert that names none is visible to staff only.
    """

    fingerprint = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    severity = models.CharField(max_length=16, db_index=True)
    state = models.CharField(max_length=16, choices=AlertState.choices, db_index=True)
    source = models.CharField(max_length=16, choices=AlertSource.choices)
    project = models.ForeignKey("registry.Project", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="alerts")
    model = models.ForeignKey("registry.RegisteredModel", null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="alerts")
    environment = models.ForeignKey("releases.Environment", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="alerts")
    endpoint = models.CharField(max_length=120, blank=True)
    # A plan's variant, or a multi-model endpoint's model: as long as a model's name.
    variant = models.CharField(max_length=100, blank=True)
    feature = models.CharField(max_length=200, blank=True)
    labels = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict)
    value = models.CharField(max_length=64, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    # Why the portal resolved it itself (its variant no longer serves the endpoint); blank
    # when Prometheus or Alertmanager resolved it, cleared when it fires again.
    resolved_reason = models.CharField(max_length=300, blank=True)
    last_seen_at = models.DateTimeField()
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledge_comment = models.TextField(blank=True)
    silenced_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    silenced_until = models.DateTimeField(null=True, blank=True)
    silence_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at"]
        indexes = [models.Index(fields=["state", "-starts_at"], name="alert_state_recent")]

    def __str__(self):
        return f"{self.name} ({self.state})"

    def get_absolute_url(self):
        return reverse("monitoring:alert", args=[self.pk])

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.name

    @property
    def description(self) -> str:
        return self.annotations.get("description", "")

    @property
    def silenced(self) -> bool:
        return bool(self.silenced_until and self.silenced_until > timezone.now())

    @property
    def severity_rank(self) -> int:
        return {Severity.CRITICAL: 0, Severity.WARNING: 1}.get(self.severity, 2)


class MonitorSettings(models.Model):
    """Alert and drift thresholds of one model (every environment it serves in)."""

    model = models.OneToOneField("registry.RegisteredModel", on_delete=models.CASCADE,
                                 related_name="monitor_settings")
    drift = models.JSONField(default=dict, blank=True,
                             help_text="ops.drift.Thresholds: psi_warning, psi_critical, "
                                       "significance, drift_share, min_count")
    drift_window_seconds = models.PositiveIntegerField(default=300)
    max_error_rate = models.FloatField(default=0.05)
    max_p99_latency_seconds = models.FloatField(default=1.0)
    no_traffic_minutes = models.PositiveIntegerField(default=10)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "monitor settings"

    def __str__(self):
        return f"monitoring of {self.model}"


class DriftWindow(models.Model):
    """The latest drift verdict of one variant of an endpoint: ``report`` is
    ``ops.drift.DriftReport.to_dict()`` over the last ``window_seconds`` of live inputs."""

    environment = models.ForeignKey("releases.Environment", on_delete=models.CASCADE,
                                    related_name="drift_windows")
    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.CASCADE,
                              related_name="drift_windows")
    version = models.ForeignKey("registry.ModelVersion", null=True, on_delete=models.SET_NULL,
                                related_name="+")
    endpoint = models.CharField(max_length=120)
    variant = models.CharField(max_length=100)  # a multi-model member's: its model's name
    window_seconds = models.PositiveIntegerField()
    report = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["environment__name", "endpoint", "variant"]
        constraints = [models.UniqueConstraint(fields=["environment", "endpoint", "variant"],
                                               name="drift_window_unique")]

    def __str__(self):
        return f"drift of {self.endpoint}/{self.variant} on {self.environment.name}"


class SyncStatus(models.Model):
    """What the last attempt of a periodic monitoring job found (shown to people):
    ``prometheus-rules`` (writing and checking rules), ``alerts-poll``, ``drift``."""

    job = models.CharField(max_length=32, unique=True)
    ok = models.BooleanField(default=True)
    detail = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "sync statuses"

    def __str__(self):
        return f"{self.job}: {'ok' if self.ok else 'failing'}"

    @classmethod
    def record(cls, job: str, ok: bool, detail: str) -> None:
        cls.objects.update_or_create(job=job, defaults={"ok": ok, "detail": detail})
