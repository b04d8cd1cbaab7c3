"""Recording and verifying the audit trail."""

from __future__ import annotations

import hashlib
import json

from django.db import connection, transaction
from django.utils import timezone

from portal.audit.middleware import current_request
from portal.audit.models import AuditEvent

GENESIS = "0" * 64
# Any fixed number: the advisory lock that serialises appends to the chain on PostgreSQL.
_CHAIN_LOCK = 7_243_001


def _canonical(event: AuditEvent) -> bytes:
    body = {
        "prev": event.prev_hash,
        "at": event.created_at.isoformat(),
        "actor": event.actor_name,
        "action": event.action,
        "type": event.object_type,
        "id": event.object_id,
        "repr": event.object_repr,
        "project": event.project_id,
        "changes": event.changes,
        "addr": event.remote_addr,
        "via": event.via,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


def _request_context():
    request = current_request.get()
    if request is None:
        return None, "system"
    addr = request.META.get("REMOTE_ADDR") or None
    path = request.path
    if path.startswith("/api/"):
        via = "api"
    elif path.startswith("/admin/"):
        via = "admin"
    else:
        via = "ui"
    return addr, via


def record(actor, action: str, obj, *, changes: dict | None = None, project_id=None,
           object_type: str | None = None, object_repr: str | None = None,
           remote_addr: str | None = None) -> AuditEvent:
    """Append one event to the chain; call inside the transaction that made the change.

    ``obj`` may be None for an event about no single object (then ``object_type`` and
    ``object_repr`` name what it is about). ``remote_addr`` replaces the request's
    ``REMOTE_ADDR`` (sign-ins record the client address their lockout counts by)."""
    addr, via = _request_context()
    addr = remote_addr or addr
    if project_id is None and obj is not None:
        project_id = _project_of(obj)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Two appends racing would both read the same last hash and fork the chain (the
            # unique prev_hash would then fail one of them); the lock makes them queue.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        user = actor if getattr(actor, "is_authenticated", False) else None
        event = AuditEvent(
            created_at=timezone.now(),
            actor=user,
            actor_name=user.get_username() if user else "",
            action=action,
            object_type=object_type or obj._meta.label_lower,
            object_id=str(obj.pk) if obj is not None else "",
            object_repr=(object_repr or str(obj))[:300],
            project_id=project_id,
            changes=json.loads(json.dumps(changes or {}, default=str)),
            remote_addr=addr,
            via=via,
            prev_hash=last or GENESIS,
        )
        event.hash = compute_hash(event)
        event.save(force_insert=True)
    return event


def _project_of(obj):
    if obj._meta.label_lower == "registry.project":
        return obj.pk
    for path in ("project_id", "model.project_id", "version.model.project_id"):
        value = obj
        try:
            for part in path.split("."):
                value = getattr(value, part)
        except AttributeError:
            continue
        return value
    return None


def change(old, new) -> dict:
    """How one field changed, as stored in ``AuditEvent.changes``."""
    return {"from": old, "to": new}


def diff(before: dict, after: dict) -> dict:
    """``{field: {"from": old, "to": new}}`` for the fields whose value changed."""
    return {k: change(before.get(k), after.get(k)) for k in after if before.get(k) != after.get(k)}


def verify_chain() -> tuple[int, list[str]]:
    """Walk the chain from the first event; return the count checked and the problems."""
    problems: list[str] = []
    expected_prev = GENESIS
    count = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        count += 1
        if event.prev_hash != expected_prev:
            problems.append(f"event {event.pk}: links to {event.prev_hash[:12]}, "
                            f"expected {expected_prev[:12]} (an event before it was removed "
                            "or reordered)")
        actual = compute_hash(event)
        if actual != event.hash:
            problems.append(f"event {event.pk}: content does not match its hash (edited)")
        expected_prev = event.hash
    return count, problems
