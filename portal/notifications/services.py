"""Notifications: outgoing webhooks (signed JSON, retried with backoff) and email.

Other code calls one function, ``notify(project, event, payload)``, after (or inside the
transaction of) the change it reports. It records a ``Delivery`` for each active webhook of
the project that subscribes to the event, queues them once the transaction commits, and emails
the project's approvers and owners. It never fails because a receiver or the mail server does.

Events and the payloads they are expected to carry (``payload`` becomes the body's ``data``;
any JSON-serialisable dict is accepted, and missing keys only make the email vaguer)::

    release.requested    {"request_id", "model", "version", "environment", "strategy",
                          "requested_by", "gates_passed", "url"}
    release.approved     {"request_id", "model", "version", "environment", "decided_by",
                          "comment", "url"}
    release.rejected     (as release.approved)
    rollout.succeeded    {"deployment_id", "model", "version", "stable_version",
                          "environment", "strategy", "status", "reason", "url"}
    rollout.rolled_back  (as rollout.succeeded; "actor" when a person rolled it back)
    rollout.failed       (as rollout.succeeded)
    rollout.paused       (as rollout.succeeded; "actor" when a person paused it)
    alert.firing         {"alert_id", "alert", "severity", "model", "environment",
                          "endpoint", "variant", "feature", "summary", "value", "url"}
    alert.resolved       (as alert.firing)

``url`` is the path of the page about it (e.g. ``/releases/12/``); e-mails link to it under
``MODELGATE_BASE_URL``. "Test webhook" sends a ``ping`` event to one webhook only.

The body POSTed to a webhook::

    {"event": "release.approved", "sent_at": "<ISO 8601>", "delivery_id": 42,
     "project": "<project slug>", "data": {...payload...}}

with ``Content-Type: application/json``, ``X-Modelgate-Event``, ``X-Modelgate-Delivery`` and
``X-Modelgate-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>``.
Receivers should compute the HMAC over the bytes received and compare in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections import defaultdict
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mass_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ops.addresses import public_only, refused_peer, url_non_public
from portal.accounts.choices import Role
from portal.accounts.models import Membership
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import Conflict, ValidationFailed
from portal.notifications.choices import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    MAX_ATTEMPTS,
    PING,
    REQUEST_TIMEOUT_SECONDS,
    DeliveryStatus,
    Event,
)
from portal.notifications.exceptions import DeliveryRetry
from portal.notifications.models import Delivery, Webhook
from portal.queue import enqueue, send_now
from portal.registry.models import Project

log = logging.getLogger(__name__)

WEBHOOK_EDITABLE = ("name", "url", "events", "active")
# An attempt in flight holds the delivery this long, so a duplicate task cannot send it again
# meanwhile; after that (a worker killed mid-request) the sweep may try again.
ATTEMPT_LEASE = timedelta(seconds=REQUEST_TIMEOUT_SECONDS * 4)
# Workers' clocks differ a little: a retry arriving this early still counts as due.
CLOCK_TOLERANCE = timedelta(seconds=5)
# The sweep leaves a delivery alone until it is this overdue (its own task may be on its way).
REQUEUE_GRACE = timedelta(minutes=2)
USER_AGENT = "Modelgate-Webhooks/1"
# The task that sends one delivery; a delivery the broker could not take stays pending, and
# the sweep (workers.notifications.requeue_deliveries, every minute) queues it again.
DELIVER = "workers.notifications.deliver_webhook"
SWEPT = "the sweep will retry"


# Webhooks --------------------------------------------------------------------------------------

def _clean(webhook: Webhook) -> None:
    """Validate through the model's rules (URL scheme, lengths) and the known event names."""
    try:
        webhook.full_clean(exclude=["project", "created_by", "secret"], validate_unique=False,
                           validate_constraints=False)
    except ValidationError as e:
        field, messages = next(iter(e.message_dict.items()))
        field = None if field == "__all__" else field
        if field == "url":
            detail = "url: give an http:// or https:// address"
        else:
            detail = "; ".join(messages) if field is None else f"{field}: {'; '.join(messages)}"
        raise ValidationFailed(detail, field=field) from e
    events = webhook.events
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValidationFailed("events must be a list of event names", field="events")
    unknown = sorted(set(events) - set(Event.values))
    if unknown:
        raise ValidationFailed(f"unknown events: {', '.join(unknown)} (known: "
                               f"{', '.join(Event.values)})", field="events")
    if not webhook.name.strip():
        raise ValidationFailed("give the webhook a name, e.g. 'slack releases'", field="name")


def _refuse_private(url: str) -> None:
    refusal = private_refusal(url)
    if refusal:
        raise ValidationFailed(f"url: {refusal}", code="private_address", field="url")


def _audited(webhook: Webhook, fields) -> dict:
    # The URL's path and query often hold a token: the append-only trail keeps the host only.
    return {k: (webhook.redacted_url if k == "url" else getattr(webhook, k)) for k in fields}


def create_webhook(user, project: Project, *, name: str, url: str,
                   events: list[str] | None = None, active: bool = True) -> tuple[Webhook, str]:
    """Create a webhook; return it with its signing secret, which is shown this once."""
    require_role(user, project, Role.OWNER, "manage webhooks")
    secret = secrets.token_urlsafe(32)
    webhook = Webhook(project=project, name=(name or "").strip(), url=(url or "").strip(),
                      events=list(dict.fromkeys(events or [])), active=active, secret=secret,
                      created_by=user)
    _clean(webhook)
    _refuse_private(webhook.url)
    try:
        with transaction.atomic():
            webhook.save()
            audit.record(user, "webhook.create", webhook,
                         changes=_audited(webhook, ("name", "url", "events", "active")))
    except IntegrityError as e:
        raise Conflict(f"project {project.slug} already has a webhook named {webhook.name!r}",
                       code="duplicate_webhook", field="name") from e
    return webhook, secret


def update_webhook(user, webhook: Webhook, **fields) -> Webhook:
    require_role(user, webhook.project, Role.OWNER, "manage webhooks")
    unknown = set(fields) - set(WEBHOOK_EDITABLE)
    if unknown:
        raise ValidationFailed(f"cannot change {', '.join(sorted(unknown))}")
    if "events" in fields and isinstance(fields["events"], list):
        fields["events"] = list(dict.fromkeys(fields["events"]))
    before = _audited(webhook, fields)
    for key, value in fields.items():
        setattr(webhook, key, value.strip() if key in ("name", "url") else value)
    _clean(webhook)
    if "url" in fields:
        _refuse_private(webhook.url)
    try:
        with transaction.atomic():
            webhook.save(update_fields=list(fields))
            audit.record(user, "webhook.update", webhook,
                         changes=audit.diff(before, _audited(webhook, fields)))
    except IntegrityError as e:
        raise Conflict(f"project {webhook.project.slug} already has a webhook named "
                       f"{webhook.name!r}", code="duplicate_webhook", field="name") from e
    return webhook


def delete_webhook(user, webhook: Webhook) -> None:
    """Delete a webhook and its delivery log; deliveries still pending are dropped."""
    require_role(user, webhook.project, Role.OWNER, "manage webhooks")
    with transaction.atomic():
        audit.record(user, "webhook.delete", webhook,
                     changes=_audited(webhook, ("name", "url")))
        webhook.delete()


def ping_webhook(user, webhook: Webhook) -> Delivery:
    """Queue a ``ping`` to one webhook, to check the receiver and its signature check."""
    require_role(user, webhook.project, Role.OWNER, "test webhooks")
    if not webhook.active:
        raise Conflict("this webhook is inactive; activate it before testing it",
                       code="webhook_inactive")
    with transaction.atomic():
        delivery = Delivery.objects.create(
            webhook=webhook, event=PING, next_attempt_at=timezone.now(),
            payload={"webhook_id": webhook.pk, "webhook": webhook.name,
                     "events": webhook.events or "all",
                     "message": "Modelgate can reach this endpoint."})
        audit.record(user, "webhook.ping", webhook,
                     changes={"delivery": delivery.pk, **_audited(webhook, ("url",))})
        enqueue(DELIVER, delivery.pk, recovery=SWEPT)
    return delivery


# Notifying -------------------------------------------------------------------------------------

def notify(project: Project, event: str, payload: dict) -> list[Delivery]:
    """Tell the project's webhooks and its approvers and owners that ``event`` happened.

    Deliveries are queued and emails sent only when the current transaction commits (at once
    outside one), so a change that rolls back announces nothing.
    """
    if event not in Event.values:
        raise ValueError(f"unknown event {event!r}; known: {', '.join(Event.values)}")
    # Stored as JSON and sent later: dates and decimals become strings now, not in the worker.
    data = json.loads(json.dumps(payload or {}, default=str))
    now = timezone.now()
    webhooks = [w for w in Webhook.objects.filter(project=project, active=True)
                if w.subscribes_to(event)]
    with transaction.atomic():
        deliveries = [Delivery.objects.create(webhook=w, event=event, payload=data,
                                              next_attempt_at=now) for w in webhooks]
        for delivery in deliveries:
            enqueue(DELIVER, delivery.pk, recovery=SWEPT)
        transaction.on_commit(lambda: send_emails(project, event, data))
    return deliveries


SUBJECTS = {
    Event.RELEASE_REQUESTED: "{model} v{version} requested for {environment}",
    Event.RELEASE_APPROVED: "{model} v{version} approved for {environment}",
    Event.RELEASE_REJECTED: "{model} v{version} rejected for {environment}",
    Event.ROLLOUT_SUCCEEDED: "{model} v{version} rolled out to {environment}",
    Event.ROLLOUT_ROLLED_BACK: "{model} v{version} rolled back in {environment}",
    Event.ROLLOUT_FAILED: "{model} v{version} rollout failed in {environment}",
    Event.ROLLOUT_PAUSED: "{model} v{version} rollout paused in {environment}",
    Event.ALERT_FIRING: "{severity} alert {alert} on {model} in {environment}",
    Event.ALERT_RESOLVED: "alert {alert} on {model} in {environment} resolved",
}


def email_recipients(project: Project) -> list[str]:
    """Addresses of the project's active approvers and owners who have one."""
    return sorted(set(
        Membership.objects.filter(project=project, role__in=[Role.APPROVER, Role.OWNER],
                                  user__is_active=True)
        .exclude(user__email="").values_list("user__email", flat=True)))


def absolute_url(path: str) -> str:
    """A page's path as a link people can open from an e-mail (``MODELGATE_BASE_URL``)."""
    if urlsplit(path).scheme:
        return path
    return f"{settings.MODELGATE_BASE_URL.rstrip('/')}/{path.lstrip('/')}"


def _email_text(project: Project, event: str, data: dict) -> tuple[str, str]:
    known = defaultdict(lambda: "?", {k: v for k, v in data.items() if isinstance(k, str)})
    summary = SUBJECTS.get(event, event).format_map(known)
    label = Event(event).label if event in Event.values else event
    lines = [f"{label} in project {project.name}: {summary}.", ""]
    lines += [f"{key}: {value}" for key, value in sorted(data.items()) if key != "url"]
    if data.get("url"):
        lines += ["", f"Details: {absolute_url(str(data['url']))}"]
    lines += ["", "You receive this as an approver or owner of the project in Modelgate."]
    return f"[Modelgate] {project.name}: {summary}", "\n".join(lines)


def send_emails(project: Project, event: str, data: dict) -> int:
    """Email the event to approvers and owners, one message each; failures are only logged."""
    try:
        recipients = email_recipients(project)
        if not recipients:
            return 0
        subject, body = _email_text(project, event, data)
        # One message per person: a team's addresses are not shown to each other.
        return send_mass_mail([(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
                               for address in recipients], fail_silently=False)
    except Exception:  # the event already happened; a mail server's trouble must not undo it
        log.exception("could not email %s of project %s", event, project.slug)
        return 0


# Delivering ------------------------------------------------------------------------------------

def backoff(attempt: int) -> timedelta:
    """How long after failed attempt ``attempt`` (1-based) the next one is due."""
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(delivery: Delivery, sent_at: datetime) -> bytes:
    return json.dumps({"event": delivery.event, "sent_at": sent_at.isoformat(),
                       "delivery_id": delivery.pk, "project": delivery.webhook.project.slug,
                       "data": delivery.payload}, separators=(",", ":")).encode()


def _private_address(url: str) -> str | None:
    """The first address ``url``'s host resolves to that is not on the public internet
    (loopback, private, link-local such as a cloud's metadata service, reserved), or None.

    Webhook addresses are typed by project owners; without this check the portal would post
    to whatever its own network can reach. Installations whose receivers live on a private
    network set ``MODELGATE_WEBHOOK_ALLOW_PRIVATE``. A host that changes its DNS answer
    between this check and the connection (DNS rebinding) is caught when connecting:
    ``_post`` checks the address connected to (``ops.addresses.public_only``).
    """
    # IPv6 forms that carry a private IPv4 address (IPv4-mapped or -compatible, NAT64,
    # 6to4, Teredo) count as private, and the host is read by both parsers: see
    # ops/addresses.py (MLflow tracking servers are checked the same way).
    return url_non_public(url)


def _ambiguous(url: str) -> str | None:
    """Why ``url`` is not a plain address parsers agree on, or None."""
    if "\\" in url:
        return "a webhook address may not contain a backslash"
    if "@" in (urlsplit(url).netloc or ""):
        return "a webhook address may not carry a user name or password (user@host)"
    return None


def private_refusal(url: str) -> str | None:
    """Why ``url`` may not receive webhooks (its host is not on the public internet and the
    installation does not allow private receivers), or None. The one rule, applied when a
    webhook is created or changed and again when delivering (DNS answers change)."""
    ambiguous = _ambiguous(url)
    if ambiguous:
        return ambiguous
    if settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE:
        return None
    private = _private_address(url)
    if not private:
        return None
    return (f"{urlsplit(url).hostname} is a non-public address ({private}); set "
            "MODELGATE_WEBHOOK_ALLOW_PRIVATE=true to allow receivers on private networks")


def _post(webhook: Webhook, delivery: Delivery, body: bytes) -> tuple[int | None, str, bool]:
    """Send one attempt: (status code or None, error text, whether retrying may help)."""
    refusal = private_refusal(webhook.url)
    if refusal:
        return None, f"refused: {refusal}", False
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Modelgate-Event": delivery.event,
               "X-Modelgate-Delivery": str(delivery.pk),
               "X-Modelgate-Signature": sign(webhook.secret, body)}
    try:
        # stream=True: only the status line and headers are read, never a large answer.
        with requests.Session() as session:
            if not settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE:  # the peer, not only the DNS
                public_only(session)
            with session.post(webhook.url, data=body, headers=headers, stream=True,
                              timeout=REQUEST_TIMEOUT_SECONDS,
                              allow_redirects=False) as response:
                code, reason = response.status_code, response.reason or ""
    except requests.Timeout:
        return None, f"no answer within {REQUEST_TIMEOUT_SECONDS} s", True
    except requests.ConnectionError as e:
        refused = refused_peer(e)
        if refused:
            return None, f"refused: {refused}", False
        # Not the exception's text: it repeats the URL, whose path may hold a token.
        return None, f"could not connect to {webhook.redacted_url}", True
    except requests.RequestException as e:
        return None, f"the request could not be sent ({type(e).__name__})", False
    if 200 <= code < 300:
        return code, "", False
    if code == 429 or code >= 500:
        return code, f"HTTP {code} {reason}".strip(), True
    if 300 <= code < 400:
        return code, (f"HTTP {code} {reason}: redirects are not followed; give the final "
                      "address"), False
    return code, f"HTTP {code} {reason}".strip(), False


def deliver(delivery_id: int, *, now: datetime | None = None) -> Delivery | None:
    """Make the next attempt of a delivery if it is due, and record what happened.

    2xx: delivered. 5xx, 429, no connection or a timeout: the attempt is recorded, the next
    one is scheduled after ``backoff`` and ``DeliveryRetry`` is raised (the task retries on
    it), until ``MAX_ATTEMPTS`` attempts have failed and the delivery is marked failed. Any
    other answer (4xx, a redirect) fails it at once: retrying would get the same answer.

    A delivery that is finished, not yet due, or claimed by another worker is left alone, so
    duplicated tasks are harmless. ``now`` stands for the clock (tests pass the due time to
    drive the attempts one by one).
    """
    now = now or timezone.now()
    delivery = (Delivery.objects.select_related("webhook__project")
                .filter(pk=delivery_id).first())
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return delivery
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + CLOCK_TOLERANCE)
    attempt = delivery.attempts + 1
    # The claim. Two workers holding the same delivery (a redelivered message, the sweep
    # racing a retry) both read the same attempt count; only the first UPDATE still finds it,
    # and the lease keeps a later duplicate off while this request is in flight.
    claimed = (Delivery.objects.filter(due, pk=delivery.pk, status=DeliveryStatus.PENDING,
                                       attempts=delivery.attempts)
               .update(attempts=attempt, next_attempt_at=now + ATTEMPT_LEASE))
    if not claimed:
        return delivery
    webhook = delivery.webhook
    if not webhook.active:
        code, error, transient = None, "the webhook was deactivated before delivery", False
    else:
        code, error, transient = _post(webhook, delivery, body_of(delivery, now))
    fields = {"last_status_code": code, "last_error": error[:300]}
    if code is not None and 200 <= code < 300:
        fields.update(status=DeliveryStatus.SUCCEEDED, delivered_at=now, next_attempt_at=None)
    elif transient and attempt < MAX_ATTEMPTS:
        fields.update(next_attempt_at=now + backoff(attempt))
    else:
        fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    Delivery.objects.filter(pk=delivery.pk, attempts=attempt).update(**fields)
    for key, value in {**fields, "attempts": attempt}.items():
        setattr(delivery, key, value)
    if delivery.status == DeliveryStatus.FAILED:
        log.warning("webhook delivery %s (%s to %s) failed after %d attempt(s): %s",
                    delivery.pk, delivery.event, webhook, attempt, error)
    elif delivery.status == DeliveryStatus.PENDING:
        raise DeliveryRetry(f"attempt {attempt} of delivery {delivery.pk} failed: {error}",
                            retry_in=backoff(attempt).total_seconds())
    return delivery


def requeue_due_deliveries(now: datetime | None = None) -> int:
    """Queue pending deliveries well past their due time (task lost, broker down, worker killed)."""
    now = now or timezone.now()
    overdue = list(Delivery.objects.filter(status=DeliveryStatus.PENDING,
                                           next_attempt_at__lt=now - REQUEUE_GRACE)
                   .values_list("pk", flat=True)[:500])
    for delivery_id in overdue:
        send_now(DELIVER, delivery_id)
    return len(overdue)
