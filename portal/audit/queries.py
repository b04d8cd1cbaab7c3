"""Reading the audit trail of one project, as its audit page filters it."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from portal.audit.models import AuditEvent

# What a row of the page shows: the chain's hashes stay out.
EVENT_COLUMNS = ("created_at", "actor_name", "action", "object_type", "object_id",
                 "object_repr", "changes", "remote_addr", "via")


def project_events(project_id: int, *, actor: str = "", action: str = "",
                   obj: str = "") -> QuerySet:
    """The project's events, newest first; ``actor`` and ``action`` exact (``actor``
    "system": events no person caused), ``obj`` a piece of the object's name or its type."""
    events = AuditEvent.objects.filter(project_id=project_id).only(*EVENT_COLUMNS)
    if actor == "system":
        events = events.filter(actor_name="")
    elif actor:
        events = events.filter(actor_name=actor)
    if action:
        events = events.filter(action=action)
    if obj:
        events = events.filter(Q(object_repr__icontains=obj) | Q(object_type__icontains=obj))
    return events.order_by("-id")


def filter_choices(project_id: int) -> dict[str, list[str]]:
    """The actors and actions the project's trail holds (the page's two menus)."""
    events = AuditEvent.objects.filter(project_id=project_id).order_by()
    actors = sorted({name or "system" for name in
                     events.values_list("actor_name", flat=True).distinct()})
    actions = sorted(events.values_list("action", flat=True).distinct())
    return {"actors": actors, "actions": actions}
