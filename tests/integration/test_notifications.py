"""Notifications: signed webhook deliveries to a real HTTP receiver, retries, email, pages."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery.utils.time import get_exponential_backoff_interval
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.notifications import services
from portal.notifications.choices import MAX_ATTEMPTS, Event
from portal.notifications.exceptions import DeliveryRetry
from portal.notifications.models import Delivery, Webhook
from tests.rebinding import rebind_to_loopback
from workers.notifications import deliver_webhook

pytestmark = pytest.mark.django_db

APPROVED = {"request_id": 7, "model": "tumor-classifier", "version": 3,
            "environment": "production", "decided_by": "alice", "comment": "metrics hold",
            "url": "/releases/7/"}


# A real receiver on loopback -------------------------------------------------------------------

@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


@dataclass
class Receiver:
    """Records every POST; answers 500 to the first ``fail_first``, then ``status``."""

    url: str = ""
    status: int = 200
    fail_first: int = 0
    delay: float = 0.0
    requests: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with receiver.lock:
            receiver.requests.append(Received(self.path, {k.lower(): v for k, v in
                                                          self.headers.items()}, body))
            count = len(receiver.requests)
        if receiver.delay:
            time.sleep(receiver.delay)
        self.send_response(500 if count <= receiver.fail_first else receiver.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/mg")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server.receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url():
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def _webhook(api, project, url, **extra) -> dict:
    response = api("owner").post("/api/v1/webhooks/", {
        "project": project.pk, "name": extra.pop("name", "ops"), "url": url, **extra},
        format="json")
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.fixture
def notify(project, django_capture_on_commit_callbacks):
    """``services.notify`` as a caller would use it, with the on-commit hooks run (the
    delivery task runs eagerly: the first attempt happens here)."""
    def call(event=Event.RELEASE_APPROVED, payload=None):
        with django_capture_on_commit_callbacks(execute=True):
            deliveries = services.notify(project, event, payload or APPROVED)
        return [Delivery.objects.get(pk=d.pk) for d in deliveries]
    return call


def _next_attempt(delivery: Delivery) -> Delivery:
    """Drive the next attempt at the time it is due, as the retrying task would."""
    services.deliver(delivery.pk, now=delivery.next_attempt_at)
    return Delivery.objects.get(pk=delivery.pk)


# Managing webhooks ------------------------------------------------------------------------------

def test_only_owners_create_webhooks_and_bad_input_is_refused(api, project, receiver):
    payload = {"project": project.pk, "name": "ops", "url": receiver.url}
    denied = api("approver").post("/api/v1/webhooks/", payload, format="json")
    assert denied.status_code == 403 and denied.json()["code"] == "role_required"
    assert api("outsider").post("/api/v1/webhooks/", payload, format="json").status_code == 404
    for url in ("ftp://example.com/hook", "not a url", "javascript:alert(1)", ""):
        bad = api("owner").post("/api/v1/webhooks/", {**payload, "url": url}, format="json")
        assert bad.status_code == 400 and bad.json()["field"] == "url", url
    bad = api("owner").post("/api/v1/webhooks/", {**payload, "events": ["release.shipped"]},
                            format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "events"
    created = api("owner").post("/api/v1/webhooks/", payload, format="json")
    assert created.status_code == 201
    again = api("owner").post("/api/v1/webhooks/", payload, format="json")
    assert again.status_code == 409 and again.json()["code"] == "duplicate_webhook"
    assert api("approver").patch(f"/api/v1/webhooks/{created.json()['id']}/", {"active": False},
                                 format="json").status_code == 403
    assert api("approver").delete(f"/api/v1/webhooks/{created.json()['id']}/").status_code == 403


def test_the_secret_is_shown_once_and_never_again(api, project, receiver):
    created = _webhook(api, project, receiver.url, events=["release.approved"])
    secret = created["secret"]
    assert len(secret) >= 40 and Webhook.objects.get(pk=created["id"]).secret == secret
    for who in ("owner", "viewer"):
        client = api(who)
        listed = client.get(f"/api/v1/webhooks/?project={project.pk}").json()["results"]
        one = client.get(f"/api/v1/webhooks/{created['id']}/").json()
        assert [w["id"] for w in listed] == [created["id"]]
        assert "secret" not in listed[0] and "secret" not in one
        assert secret not in json.dumps(listed) + json.dumps(one)
    # Owners see the address; the others only its host (a path may hold a token).
    assert api("owner").get(f"/api/v1/webhooks/{created['id']}/").json()["url"] == receiver.url
    assert api("viewer").get(f"/api/v1/webhooks/{created['id']}/").json()["url"].endswith("/…")
    assert api("outsider").get(f"/api/v1/webhooks/{created['id']}/").status_code == 404
    changed = api("owner").patch(f"/api/v1/webhooks/{created['id']}/",
                                 {"events": [], "active": False}, format="json")
    assert changed.status_code == 200 and changed.json()["events"] == []
    assert "secret" not in changed.json()
    trail = AuditEvent.objects.filter(action__startswith="webhook.")
    assert sorted(trail.values_list("action", flat=True)) == ["webhook.create", "webhook.update"]
    assert all(secret not in json.dumps(e.changes) for e in trail)
    assert api("owner").delete(f"/api/v1/webhooks/{created['id']}/").status_code == 204
    assert not Webhook.objects.exists()


# Delivering -----------------------------------------------------------------------------------

def test_notify_delivers_a_signed_json_body(api, project, receiver, notify):
    secret = _webhook(api, project, receiver.url)["secret"]
    [delivery] = notify()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    [sent] = receiver.requests
    assert sent.path == "/hooks/mg"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-modelgate-event"] == "release.approved"
    assert sent.headers["x-modelgate-delivery"] == str(delivery.pk)
    expected = "sha256=" + hmac.new(secret.encode(), sent.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sent.headers["x-modelgate-signature"], expected)
    body = json.loads(sent.body)
    assert datetime.fromisoformat(body.pop("sent_at")).tzinfo is not None
    assert body == {"event": "release.approved", "delivery_id": delivery.pk,
                    "project": "clinical-ml", "data": APPROVED}
    # Finished deliveries are never sent again, whoever asks.
    services.deliver(delivery.pk)
    assert len(receiver.requests) == 1


def test_server_errors_are_retried_with_backoff_until_delivered(api, project, receiver, notify):
    _webhook(api, project, receiver.url)
    receiver.fail_first = 2
    [delivery] = notify()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    first_wait = delivery.next_attempt_at - delivery.created_at
    # Not due yet: a duplicate or early task sends nothing.
    services.deliver(delivery.pk)
    assert len(receiver.requests) == 1
    with pytest.raises(DeliveryRetry):
        services.deliver(delivery.pk, now=delivery.next_attempt_at)
    second = Delivery.objects.get(pk=delivery.pk)
    assert (second.status, second.attempts, second.last_error) == (
        "pending", 2, "HTTP 500 Internal Server Error")
    assert second.next_attempt_at - delivery.next_attempt_at > first_wait  # the wait doubles
    third = _next_attempt(second)
    assert (third.status, third.attempts, third.last_status_code, third.last_error) == (
        "succeeded", 3, 200, "")
    assert {r.headers["x-modelgate-delivery"] for r in receiver.requests} == {str(delivery.pk)}
    assert len(receiver.requests) == 3


def test_too_many_requests_is_retried_but_other_client_errors_fail_at_once(
        api, project, receiver, notify):
    _webhook(api, project, receiver.url)
    receiver.status = 429
    [limited] = notify()
    assert (limited.status, limited.last_status_code) == ("pending", 429)
    receiver.status = 404
    [refused] = notify()
    assert (refused.status, refused.attempts, refused.last_status_code) == ("failed", 1, 404)
    assert refused.next_attempt_at is None
    services.deliver(refused.pk, now=refused.created_at.replace(year=2100))
    assert Delivery.objects.get(pk=refused.pk).attempts == 1 and len(receiver.requests) == 2


def test_an_unreachable_receiver_is_retried_then_failed_after_the_bound(api, project, notify,
                                                                       closed_port_url):
    _webhook(api, project, closed_port_url)
    [delivery] = notify()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error.startswith("could not connect to http://127.0.0.1:")
    while delivery.attempts < MAX_ATTEMPTS - 1:
        with pytest.raises(DeliveryRetry):
            services.deliver(delivery.pk, now=delivery.next_attempt_at)
        delivery = Delivery.objects.get(pk=delivery.pk)
    last = _next_attempt(delivery)  # the last attempt fails the delivery instead of raising
    assert (last.status, last.attempts, last.next_attempt_at) == ("failed", MAX_ATTEMPTS, None)


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.1.2.3", "[::1]",
                                     # IPv6 forms carrying loopback (issue 18)
                                     "[::127.0.0.1]", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]",
                                     "[2002:7f00:1::]"])
def test_webhooks_to_non_public_addresses_are_refused_unless_allowed(
        api, project, receiver, notify, settings, address):
    url = f"http://{address}:{receiver.url.split(':')[2]}"
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = False
    # Refused when created (issue 16), by the rule deliveries apply...
    refused = api("owner").post("/api/v1/webhooks/", {
        "project": project.pk, "name": "ops", "url": url}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "url"
    assert "non-public address" in refused.json()["detail"]
    assert "MODELGATE_WEBHOOK_ALLOW_PRIVATE" in refused.json()["detail"]
    # ...and again when delivering: one made while the installation allowed it.
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = True
    _webhook(api, project, url)
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = False
    [delivery] = notify()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, None)
    assert "non-public address" in delivery.last_error
    assert "MODELGATE_WEBHOOK_ALLOW_PRIVATE" in delivery.last_error
    assert receiver.requests == []


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("trick", ["\\@example.com/hooks", "@example.com/hooks"])
def test_an_address_parsers_read_differently_is_refused(api, project, receiver, notify,
                                                        settings, trick, allow_private):
    """urllib3 (which delivers) reads "http://127.0.0.1:P\\@example.com/" as 127.0.0.1, the
    standard library as example.com: such an address is refused when created and when
    delivering, whatever the installation allows."""
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = allow_private
    url = f"http://127.0.0.1:{receiver.url.split(':')[2].split('/')[0]}{trick}"
    refused = api("owner").post("/api/v1/webhooks/", {
        "project": project.pk, "name": "ops", "url": url}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "url", refused.json()
    Webhook.objects.create(project=project, name="old", url=url, secret="s" * 32)  # stored
    # before this rule: every event
    notify()
    assert receiver.requests == []


def test_a_slow_receiver_times_out_and_is_retried(api, project, receiver, notify, monkeypatch):
    monkeypatch.setattr(services, "REQUEST_TIMEOUT_SECONDS", 0.3)
    _webhook(api, project, receiver.url)
    receiver.delay = 1.5
    [delivery] = notify()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error == "no answer within 0.3 s"


def test_the_task_retries_exactly_when_the_next_attempt_is_due():
    task = deliver_webhook
    assert task.autoretry_for == (DeliveryRetry,) and task.max_retries == MAX_ATTEMPTS - 1
    for retries in range(MAX_ATTEMPTS - 1):
        countdown = get_exponential_backoff_interval(
            task.retry_backoff, retries, task.retry_backoff_max, task.retry_jitter)
        assert countdown == services.backoff(retries + 1).total_seconds()


def test_the_sweep_resends_deliveries_whose_task_was_lost(api, project, receiver,
                                                         django_capture_on_commit_callbacks):
    webhook = Webhook.objects.get(pk=_webhook(api, project, receiver.url)["id"])
    now = timezone.now()
    lost = Delivery.objects.create(webhook=webhook, event="rollout.succeeded", payload={},
                                   next_attempt_at=now - timedelta(minutes=10))
    queued = Delivery.objects.create(webhook=webhook, event="rollout.failed", payload={},
                                     next_attempt_at=now)
    with django_capture_on_commit_callbacks(execute=True):  # queued once it commits
        assert services.requeue_due_deliveries() == 1
    assert Delivery.objects.get(pk=lost.pk).status == "succeeded"
    assert Delivery.objects.get(pk=queued.pk).status == "pending"


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_the_same_attempt(project, users, receiver):
    webhook, _ = services.create_webhook(users["owner"], project, name="ops", url=receiver.url)
    receiver.delay = 0.5  # the first attempt is still in flight when the second worker looks
    delivery = Delivery.objects.create(webhook=webhook, event="release.approved", payload={})
    start = threading.Barrier(2)

    def worker():
        try:
            start.wait()
            services.deliver(delivery.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(receiver.requests) == 1
    assert Delivery.objects.values_list("status", "attempts").get(pk=delivery.pk) == (
        "succeeded", 1)


def test_only_subscribed_active_webhooks_receive_an_event(api, project, receiver, notify):
    approvals = _webhook(api, project, receiver.url, name="approvals",
                         events=["release.approved", "release.rejected"])
    everything = _webhook(api, project, receiver.url, name="everything")
    off = _webhook(api, project, receiver.url, name="off")
    api("owner").patch(f"/api/v1/webhooks/{off['id']}/", {"active": False}, format="json")
    requested = notify(Event.RELEASE_REQUESTED, {"model": "m", "version": 1})
    assert [d.webhook_id for d in requested] == [everything["id"]]
    approved = notify(Event.RELEASE_APPROVED)
    assert sorted(d.webhook_id for d in approved) == sorted([approvals["id"], everything["id"]])
    assert [r.headers["x-modelgate-event"] for r in receiver.requests] == [
        "release.requested", "release.approved", "release.approved"]
    with pytest.raises(ValueError):
        services.notify(project, "release.shipped", {})


def test_a_change_that_rolls_back_announces_nothing(api, project, receiver, settings,
                                                    django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    _webhook(api, project, receiver.url)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            services.notify(project, Event.ROLLOUT_FAILED, {"model": "m"})
            raise RuntimeError("the rollout's own transaction fails")
    assert not Delivery.objects.exists() and receiver.requests == [] and mail.outbox == []


# Email -----------------------------------------------------------------------------------------

def test_approvers_and_owners_with_an_address_are_emailed(users, project, notify, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "modelgate@example.org"
    for key in ("owner", "approver", "contributor", "viewer"):
        users[key].email = f"{users[key].username}@example.org"
        users[key].save()
    notify(Event.ROLLOUT_ROLLED_BACK, {"model": "tumor-classifier", "version": 4,
                                       "environment": "production", "reason": "error rate"})
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.org", "olivia@example.org"]
    assert all(len(m.to) == 1 and m.from_email == "modelgate@example.org" for m in mail.outbox)
    message = mail.outbox[0]
    assert message.subject == ("[Modelgate] Clinical ML: tumor-classifier v4 rolled back in "
                               "production")
    assert "reason: error rate" in message.body
    users["approver"].email = ""
    users["approver"].save()
    mail.outbox.clear()
    notify(Event.RELEASE_REJECTED)
    assert [m.to for m in mail.outbox] == [["olivia@example.org"]]


class FailingEmailBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("no mail server on port 25")


def test_a_mail_server_failure_is_logged_not_raised(users, project, api, receiver, notify,
                                                     settings, caplog):
    settings.EMAIL_BACKEND = f"{__name__}.FailingEmailBackend"
    users["owner"].email = "olivia@example.org"
    users["owner"].save()
    _webhook(api, project, receiver.url)
    [delivery] = notify()
    assert delivery.status == "succeeded"
    assert "could not email release.approved of project clinical-ml" in caplog.text


# Testing and reading the log through the API ----------------------------------------------------

def test_ping_and_the_delivery_log(api, project, receiver, notify):
    webhook = _webhook(api, project, receiver.url)
    receiver.status = 404
    notify()
    receiver.status = 200
    assert api("approver").post(f"/api/v1/webhooks/{webhook['id']}/test/").status_code == 403
    ping = api("owner").post(f"/api/v1/webhooks/{webhook['id']}/test/")
    assert ping.status_code == 202 and ping.json()["event"] == "ping"
    assert receiver.requests[-1].headers["x-modelgate-event"] == "ping"
    log = api("viewer").get(f"/api/v1/webhooks/{webhook['id']}/deliveries/").json()
    assert log["count"] == 2
    assert [(d["event"], d["status"], d["attempts"], d["last_status_code"])
            for d in log["results"]] == [("ping", "succeeded", 1, 200),
                                         ("release.approved", "failed", 1, 404)]
    failed = api("viewer").get(f"/api/v1/webhooks/{webhook['id']}/deliveries/?status=failed")
    assert [d["event"] for d in failed.json()["results"]] == ["release.approved"]
    bad = api("viewer").get(f"/api/v1/webhooks/{webhook['id']}/deliveries/?status=lost")
    assert bad.status_code == 400
    listed = api("viewer").get(f"/api/v1/webhooks/?project_slug={project.slug}").json()
    assert listed["results"][0]["last_delivery_status"] == "succeeded"


# Pages -----------------------------------------------------------------------------------------

@pytest.fixture
def browser_for(users):
    def make(who):
        client = Client()
        client.force_login(users[who])
        return client
    return make


def test_owners_add_webhooks_on_the_page_and_see_the_secret_once(browser_for, project,
                                                                 receiver):
    owner = browser_for("owner")
    page = owner.get("/p/clinical-ml/webhooks/")
    assert page.status_code == 200 and b'id="webhook-form"' in page.content
    assert b"No webhooks yet" in page.content
    bad = owner.post("/p/clinical-ml/webhooks/", {"name": "ops", "url": "ftp://x/"})
    assert bad.status_code == 200 and b"give an http:// or https:// address" in bad.content
    created = owner.post("/p/clinical-ml/webhooks/", {
        "name": "ops", "url": receiver.url, "events": ["rollout.failed", "rollout.rolled_back"]})
    secret = Webhook.objects.get(name="ops").secret
    assert created.status_code == 200 and secret.encode() in created.content
    assert created.headers["Cache-Control"] == "no-store"  # shown once: no copy kept
    assert Webhook.objects.get(name="ops").events == ["rollout.failed", "rollout.rolled_back"]
    again = owner.get("/p/clinical-ml/webhooks/")
    assert secret.encode() not in again.content and receiver.url.encode() in again.content
    viewer = browser_for("viewer").get("/p/clinical-ml/webhooks/")
    assert viewer.status_code == 200 and b'id="webhook-form"' not in viewer.content
    assert b"ops" in viewer.content and receiver.url.encode() not in viewer.content
    assert browser_for("outsider").get("/p/clinical-ml/webhooks/").status_code == 404
    assert b"/p/clinical-ml/webhooks/" in owner.get("/p/clinical-ml/").content


def test_the_delivery_log_page_lists_attempts(browser_for, api, project, receiver, notify):
    webhook = _webhook(api, project, receiver.url)
    receiver.fail_first = 1
    [delivery] = notify()
    _next_attempt(delivery)
    receiver.status = 410
    notify(Event.ROLLOUT_PAUSED, {"model": "m", "version": 2})
    url = f"/p/clinical-ml/webhooks/{webhook['id']}/"
    for who in ("owner", "viewer"):
        page = browser_for(who).get(url)
        assert page.status_code == 200
        rows = page.content.decode().split('id="deliveries"')[1]
        assert "rollout.paused" in rows and "HTTP 410" in rows and "failed" in rows
        assert "release.approved" in rows and "succeeded" in rows and "HTTP 200" in rows
        assert '<td class="num">2</td>' in rows  # the retried delivery took two attempts
        assert (b"Send test ping" in page.content) == (who == "owner")
    empty = browser_for("viewer").get(url + "?status=pending")
    assert b"No pending deliveries" in empty.content
    assert browser_for("outsider").get(url).status_code == 404
    assert browser_for("viewer").post(url + "delete/").status_code == 403
    gone = browser_for("owner").post(url + "delete/")
    assert gone.status_code == 302 and not Webhook.objects.exists()


def test_release_requests_decisions_and_rollouts_are_announced(api, project, clf, receiver,
                                                                 settings, users,
                                                                 django_capture_on_commit_callbacks):
    """The release workflow calls notify(): request, approval, and the rollout's end."""
    from tests.integration.local_fixtures import free_port
    from tests.portal_fixtures import local_target, metadata, random_classifier_bytes

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    users["approver"].email = "alice@example.com"
    users["approver"].save()
    _webhook(api, project, receiver.url)
    version = api("contributor").upload(clf.pk, random_classifier_bytes(1), metadata()).json()
    local_target(settings, free_port())
    environment = api("owner").post("/api/v1/environments/", {
        "project": project.pk, "name": "production"}, format="json").json()
    request = api("contributor").post("/api/v1/approval-requests/", {
        "version": version["id"], "environment": environment["id"]}, format="json").json()
    api("approver").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                         {"comment": "ship it"}, format="json")
    # The approval started the rollout (eagerly here): a first release goes out directly,
    # and succeeds once its model server serves it (what the rollout worker waits for).
    from portal.releases.models import Deployment
    from tests.portal_fixtures import settled

    with django_capture_on_commit_callbacks(execute=True):  # the rollout's announcements
        settled(Deployment.objects.get(request_id=request["id"]))
    events = [json.loads(r.body)["event"] for r in receiver.requests]
    assert events[:2] == ["release.requested", "release.approved"]
    assert "rollout.succeeded" in events
    succeeded = next(json.loads(r.body) for r in receiver.requests
                     if json.loads(r.body)["event"] == "rollout.succeeded")
    assert succeeded["data"]["model"] == "tumor-classifier" and succeeded["data"]["version"] == 1
    assert any("tumor-classifier" in m.subject and m.to == ["alice@example.com"]
               for m in mail.outbox), [(m.subject, m.to) for m in mail.outbox]


def test_a_name_rebound_to_loopback_after_the_check_is_not_posted_to(
        api, project, receiver, notify, settings, monkeypatch):
    port = int(receiver.url.split(":")[2].split("/")[0])
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = True  # made while allowed (no DNS then)
    _webhook(api, project, f"http://rebind.attacker.example:{port}/hook")
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = False
    rebind_to_loopback(monkeypatch, port)  # public once, then loopback
    [delivery] = notify()
    assert receiver.requests == []
    assert (delivery.status, delivery.last_status_code) == ("failed", None)
    assert "127.0.0.1 is not a public address" in delivery.last_error
