"""Per-model monitoring settings: alert and drift thresholds (validated, audited)."""

from __future__ import annotations

from django.db import transaction

from ops import drift as ops_drift
from ops.prometheus import EndpointRules
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import ValidationFailed
from portal.monitoring.models import MonitorSettings

EDITABLE = ("drift", "drift_window_seconds", "max_error_rate", "max_p99_latency_seconds",
            "no_traffic_minutes")
MIN_WINDOW, MAX_WINDOW = 5, 7 * 24 * 3600


def settings_of(model) -> MonitorSettings:
    return MonitorSettings.objects.filter(model=model).first() or MonitorSettings(model=model)


def update_settings(user, model, **fields) -> MonitorSettings:
    """Change a model's thresholds; approvers and owners only (they decide what pages people
    and what rolls a release back)."""
    require_role(user, model.project, Role.APPROVER, "change monitoring thresholds")
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationFailed(f"unknown fields: {', '.join(sorted(unknown))}")
    current = settings_of(model)
    before = {k: getattr(current, k) for k in EDITABLE}
    for key, value in fields.items():
        setattr(current, key, value)
    try:
        thresholds = ops_drift.Thresholds.from_dict(current.drift)
    except ValueError as e:
        raise ValidationFailed(str(e), field="drift") from e
    current.drift = {k: v for k, v in thresholds.to_dict().items()
                     if k in (current.drift or {})}
    window = current.drift_window_seconds
    if not isinstance(window, int) or not (MIN_WINDOW <= window <= MAX_WINDOW):
        raise ValidationFailed(f"drift_window_seconds must be between {MIN_WINDOW} and "
                               f"{MAX_WINDOW}", field="drift_window_seconds")
    try:
        EndpointRules(environment="e", endpoint="e", project="p", model="m",
                      max_error_rate=float(current.max_error_rate),
                      max_p99_latency_seconds=float(current.max_p99_latency_seconds),
                      no_traffic_minutes=int(current.no_traffic_minutes))
    except (TypeError, ValueError) as e:
        field = next((k for k in ("max_error_rate", "max_p99_latency_seconds",
                                  "no_traffic_minutes") if k in str(e)), None)
        raise ValidationFailed(str(e), field=field) from e
    after = {k: getattr(current, k) for k in EDITABLE}
    with transaction.atomic():
        current.save()
        audit.record(user, "monitoring.update", model, project_id=model.project_id,
                     changes=audit.diff(before, after))
    return current
