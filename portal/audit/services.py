"""Recording and verifying the audit trail.

Each event's hash covers its content and the previous event's hash; it is an HMAC under a
key outside the database (``portal/audit/keys.py``), plain sha256 for events recorded before
keys (empty ``key_id``). Checkpoints of the head, written outside the database
(``portal/audit/checkpoints.py``), show events deleted from the end.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from portal.audit import checkpoints
from portal.audit import keys as audit_keys
from portal.audit.middleware import current_request
from portal.audit.models import AuditEvent

GENESIS = "0" * 64
# Any fixed number: the advisory lock that serialises appends to the chain on PostgreSQL.
_CHAIN_LOCK = 7_243_001
_EVENT = b"modelgate audit event"


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
    if event.key_id:  # legacy events keep the body they were hashed with
        body["kid"] = event.key_id
    return audit_keys.canonical(body)


def compute_hash(event: AuditEvent, keyring: audit_keys.Keyring | None = None) -> str:
    """The hash ``event`` must carry: HMAC-SHA256 under the key its ``key_id`` names, sha256
    for a legacy event (no key id). ``AuditKeyError`` when the keyring lacks the key."""
    if not event.key_id:
        return hashlib.sha256(_canonical(event)).hexdigest()
    key = (keyring or audit_keys.keyring()).keys.get(event.key_id)
    if key is None:
        raise audit_keys.AuditKeyError(f"no audit key {event.key_id!r} is configured")
    return audit_keys.mac(key, _EVENT, _canonical(event))


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
    keyring = audit_keys.keyring()
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
            key_id=keyring.signing_id,
        )
        event.hash = compute_hash(event, keyring)
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


@dataclass
class Verification:
    """What ``verify`` checked and what it found wrong (one sentence a problem)."""

    events: int = 0
    legacy: int = 0  # events hashed with plain sha256, from before keys
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)


class _Walk:
    """The chain read in order: links, hashes and MACs, and the hashes and positions of
    the events the checkpoints name."""

    def __init__(self, keyring: audit_keys.Keyring, wanted: set[int]):
        self.keyring, self.wanted = keyring, wanted
        self.expected_prev = GENESIS
        self.first_keyed: int | None = None
        self.count = self.legacy = 0
        self.last_id: int | None = None
        self.heads: dict[int, tuple[str, int]] = {}
        self.problems: list[str] = []

    def step(self, event: AuditEvent) -> None:
        self.count += 1
        if event.prev_hash != self.expected_prev:
            self.problems.append(
                f"event {event.pk}: links to {event.prev_hash[:12]}, expected "
                f"{self.expected_prev[:12]} (an event before it was removed, inserted or "
                "reordered)")
        self._check_hash(event)
        if event.pk in self.wanted:
            self.heads[event.pk] = (event.hash, self.count)
        self.expected_prev = event.hash
        self.last_id = event.pk

    def _check_hash(self, event: AuditEvent) -> None:
        if not event.key_id:
            self.legacy += 1
            if self.first_keyed is not None:
                # Keys, once used, are used for every later event: an unkeyed one after them
                # is a keyed event rewritten with plain sha256.
                self.problems.append(
                    f"event {event.pk}: hashed without a key although event "
                    f"{self.first_keyed} before it is keyed (rewritten)")
            elif compute_hash(event) != event.hash:
                self.problems.append(f"event {event.pk}: content does not match its hash "
                                     "(edited)")
            return
        if self.first_keyed is None:
            self.first_keyed = event.pk
        if event.key_id not in self.keyring.keys:
            self.problems.append(f"event {event.pk}: signed with key id {event.key_id!r}, "
                                 "which MODELGATE_AUDIT_KEYS does not hold")
        elif not hmac.compare_digest(compute_hash(event, self.keyring), event.hash):
            self.problems.append(f"event {event.pk}: content does not match its MAC "
                                 "(edited, or rehashed without the key)")


def verify(store=None) -> Verification:
    """Walk the chain from the first event and compare it with every checkpoint in
    ``store`` (default: the configured checkpoint store)."""
    result = Verification()
    try:
        keyring = audit_keys.keyring()
    except audit_keys.AuditKeyError as e:
        result.problems.append(f"nothing was verified: {e}")
        return result
    store = store if store is not None else checkpoints.checkpoint_store()
    read_problems: list[str] = []
    result.checkpoints, trusted = checkpoints.read_all(store, keyring, read_problems)
    walk = _Walk(keyring, {cp.last_id for cp in trusted})
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        walk.step(event)
    result.events, result.legacy = walk.count, walk.legacy
    result.problems = [*walk.problems, *read_problems,
                       *checkpoints.compare(trusted, walk.heads, walk.last_id)]
    return result


def verify_chain() -> tuple[int, list[str]]:
    """``verify`` as the number of events checked and the problems."""
    result = verify()
    return result.events, result.problems


def write_checkpoint(store=None, now: datetime | None = None) -> checkpoints.Checkpoint | None:
    """Write the chain's head, signed, to ``store`` (default: the configured checkpoint
    store). None when the chain is empty or the newest checkpoint already names its head.

    Events commit in id order (appends queue on the chain lock until they commit), so no
    event below the head read here can appear later: the count stays true. Two writers at
    once may both write the same number; either checkpoint is a true head.
    """
    store = store if store is not None else checkpoints.checkpoint_store()
    head = AuditEvent.objects.order_by("-id").values_list("pk", "hash").first()
    if head is None:
        return None
    last_id, last_hash = head
    seq = checkpoints.last_seq(store)
    try:
        newest = checkpoints.read(store, seq) if seq else None
    except ValueError:
        newest = None  # not a checkpoint: verification reports it; write the next one
    if newest is not None and (newest.last_id, newest.hash) == (last_id, last_hash):
        return None
    checkpoint = checkpoints.Checkpoint(
        seq=seq + 1, last_id=last_id, hash=last_hash,
        count=AuditEvent.objects.filter(pk__lte=last_id).count(),
        written_at=(now or timezone.now()).isoformat(), key_id="",
    ).signed(audit_keys.keyring())
    checkpoints.write(store, checkpoint)
    return checkpoint
