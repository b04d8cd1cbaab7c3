from django.db import models


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


class AlertSource(models.TextChoices):
    PROMETHEUS = "prometheus", "Prometheus (polled)"
    ALERTMANAGER = "alertmanager", "Alertmanager (webhook)"
