from django.db.models import Case, IntegerField, Q, Value, When

from portal.accounts.services import visible_project_ids
from portal.monitoring.models import Alert, DriftWindow


def alerts_for(user):
    """Alerts the user may see: their projects' (staff: all, including unplaced ones),
    firing first, then critical before warning, newest first."""
    if not getattr(user, "is_authenticated", False):
        return Alert.objects.none()
    alerts = Alert.objects.select_related("project", "model", "environment",
                                          "acknowledged_by", "silenced_by")
    ids = visible_project_ids(user)
    if ids is not None:
        alerts = alerts.filter(project_id__in=ids)
    return alerts.annotate(
        firing_first=Case(When(state="firing", then=Value(0)), default=Value(1),
                          output_field=IntegerField()),
        severity_order=Case(When(severity="critical", then=Value(0)),
                            When(severity="warning", then=Value(1)), default=Value(2),
                            output_field=IntegerField()),
    ).order_by("firing_first", "severity_order", "-starts_at")


def firing_alerts_for(user):
    """The firing alerts the user may see, with their project and environment, unordered:
    what the dashboard groups into incidents (``incidents.open_incidents``), without the
    alerts page's joins and ordering."""
    if not getattr(user, "is_authenticated", False):
        return Alert.objects.none()
    alerts = Alert.objects.filter(state="firing").select_related("project", "environment")
    ids = visible_project_ids(user)
    return alerts if ids is None else alerts.filter(project_id__in=ids)


def drift_windows_for(user, environment, endpoint: str):
    ids = visible_project_ids(user)
    windows = DriftWindow.objects.filter(environment=environment, endpoint=endpoint)
    if ids is not None:
        windows = windows.filter(Q(environment__project_id__in=ids))
    return windows.select_related("version").order_by("variant")
