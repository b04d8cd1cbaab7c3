"""The audit trail against someone who can write the database (decision 49).

Keyed hashes: an event edited and every later hash recomputed — with plain sha256, or with
an HMAC under a key that is not the portal's — is found. Append-only on PostgreSQL: updates,
deletes and truncation are refused, except a deleted user's events losing their link.
Checkpoints outside the database: an event a checkpoint names changed or missing, and a
chain cut back past a checkpoint, are found. ``verify_audit_chain`` says so and exits 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from portal.audit import checkpoints, services
from portal.audit.checks import check_audit_keys
from portal.audit.keys import DERIVED_KEY_ID, AuditKeyError, parse_keys
from portal.audit.models import AuditEvent

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

K1 = "k1:" + "a" * 40
K2 = "k2:" + "b" * 40
postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'",
                                     reason="the trigger is PostgreSQL's")


@contextlib.contextmanager
def as_table_owner():
    """What someone allowed to alter the table can do: write it with its triggers off (the
    trigger binds the application's role; the owner or a superuser can disable it)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = DEFAULT")


def record(n: int, actor=None) -> list[AuditEvent]:
    return [services.record(actor, "test.thing", None, object_type="test.thing",
                            object_repr=f"thing {i}") for i in range(n)]


def verify_command() -> tuple[str, str]:
    """``manage.py verify_audit_chain``'s output; raises CommandError as the command fails."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit_chain", stdout=out, stderr=err)
    except CommandError as e:
        e.output = err.getvalue()
        raise
    return out.getvalue(), err.getvalue()


def broken() -> str:
    """The failing command's sentences; asserts it exits with status 1."""
    with pytest.raises(CommandError, match="audit chain broken") as failure:
        verify_command()
    assert failure.value.returncode == 1
    return failure.value.output


def rewrite_from(pk: int, rehash, edit=lambda event: None) -> None:
    """Edit event ``pk`` and recompute its hash and every later one's (and their links) with
    ``rehash(event)``, as someone with write access to the table would."""
    previous = None
    with as_table_owner():
        for event in AuditEvent.objects.order_by("id"):
            if event.pk < pk:
                previous = event.hash
                continue
            if event.pk == pk:
                edit(event)
            event.prev_hash = previous or services.GENESIS
            event.hash = rehash(event)
            AuditEvent.objects.filter(pk=event.pk).update(
                action=event.action, object_repr=event.object_repr, key_id=event.key_id,
                prev_hash=event.prev_hash, hash=event.hash)
            previous = event.hash


def edit_action(event):
    event.action = "test.nothing_to_see"


def as_legacy(event) -> str:
    """The event hashed as before keys: no key id, plain sha256."""
    event.key_id = ""
    return services.compute_hash(event)


# Keyed hashes -------------------------------------------------------------------------------

def test_new_events_are_signed_with_the_first_configured_key(settings):
    settings.MODELGATE_AUDIT_KEYS = f"{K2},{K1}"
    events = record(3)
    assert {e.key_id for e in events} == {"k2"}
    assert all(len(e.hash) == 64 for e in events)
    out, _ = verify_command()
    assert "audit chain intact: 3 events verified, 0 checkpoints checked." in out


def test_without_configured_keys_a_key_derived_from_the_secret_key_signs(settings):
    settings.MODELGATE_AUDIT_KEYS = ""
    events = record(2)
    assert {e.key_id for e in events} == {DERIVED_KEY_ID}
    # Configuring real keys later: 'secret-key' in the list keeps those events verifying.
    settings.MODELGATE_AUDIT_KEYS = f"{K1},{DERIVED_KEY_ID}"
    record(1)
    assert services.verify_chain() == (3, [])
    settings.MODELGATE_AUDIT_KEYS = K1
    problems = services.verify_chain()[1]
    assert len(problems) == 2 and all("'secret-key', which MODELGATE_AUDIT_KEYS does not "
                                      "hold" in p for p in problems)


def test_rotated_keys_verify_old_events_until_the_old_key_is_dropped(settings):
    settings.MODELGATE_AUDIT_KEYS = K1
    old = record(2)
    settings.MODELGATE_AUDIT_KEYS = f"{K2},{K1}"
    new = record(2)
    assert [e.key_id for e in old + new] == ["k1", "k1", "k2", "k2"]
    assert services.verify_chain() == (4, [])
    settings.MODELGATE_AUDIT_KEYS = K2
    output = broken()
    assert f"event {old[0].pk}: signed with key id 'k1'" in output
    assert f"event {new[0].pk}" not in output


def test_events_from_before_keys_still_verify_as_sha256(settings):
    """Events recorded before the migration have no key id and a plain sha256 hash."""
    settings.MODELGATE_AUDIT_KEYS = K1
    legacy = record(3)
    rewrite_from(legacy[0].pk, rehash=as_legacy)
    assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {""}
    keyed = record(2)
    assert keyed[0].prev_hash == AuditEvent.objects.get(pk=legacy[-1].pk).hash
    out, _ = verify_command()
    assert "5 events verified, 3 of them from before keys (sha256)" in out
    # An edited legacy event is found as before.
    with as_table_owner():
        AuditEvent.objects.filter(pk=legacy[1].pk).update(object_repr="something else")
    assert f"event {legacy[1].pk}: content does not match its hash (edited)" in broken()


def test_an_edit_rehashed_with_plain_sha256_is_found(settings):
    settings.MODELGATE_AUDIT_KEYS = K1
    events = record(5)
    rewrite_from(events[2].pk, edit=edit_action,
                 rehash=lambda e: hashlib.sha256(services._canonical(e)).hexdigest())
    output = broken()
    assert f"event {events[2].pk}: content does not match its MAC" in output
    assert f"event {events[1].pk}:" not in output  # the events before it are intact


def test_an_edit_passed_off_as_legacy_events_is_found(settings):
    """Clearing the key ids to make the rewritten events look older than keys."""
    settings.MODELGATE_AUDIT_KEYS = K1
    events = record(5)
    rewrite_from(events[2].pk, edit=edit_action, rehash=as_legacy)
    output = broken()
    assert (f"event {events[2].pk}: hashed without a key although event {events[0].pk} "
            "before it is keyed (rewritten)") in output


def test_an_edit_rehashed_with_a_wrong_key_is_found(settings):
    settings.MODELGATE_AUDIT_KEYS = K1
    events = record(5)
    wrong = parse_keys("k1:" + "w" * 40, "")  # the portal's key id, someone else's secret
    rewrite_from(events[1].pk, edit=edit_action,
                 rehash=lambda e: services.compute_hash(e, wrong))
    output = broken()
    assert f"event {events[1].pk}: content does not match its MAC" in output
    assert "Checked 5 events and 0 checkpoints." in output


def test_a_removed_event_breaks_the_links(settings):
    events = record(3)
    with as_table_owner():
        AuditEvent.objects.filter(pk=events[1].pk).delete()
    assert f"event {events[2].pk}: links to" in broken()


@pytest.mark.parametrize("text, message", [
    ("k1", "entry 1 does not read '<key id>:<secret>'"),
    ("k1:short", "the secret of key 'k1' is shorter than 32 characters"),
    (f"{K1},{K1}", "names key 'k1' twice"),
    ("secret-key:" + "s" * 40, "is reserved"),
    ("bad id:" + "s" * 40, "entry 1 does not read"),
])
def test_malformed_keys_are_refused_without_showing_the_secret(settings, text, message):
    with pytest.raises(AuditKeyError, match=message) as error:
        parse_keys(text, "x")
    assert "s" * 40 not in str(error.value)
    settings.MODELGATE_AUDIT_KEYS = text
    assert [e.id for e in check_audit_keys(None)] == ["modelgate.E030"]
    with pytest.raises(AuditKeyError):
        record(1)


def test_the_production_profile_warns_when_no_key_is_configured(settings):
    settings.MODELGATE_PRODUCTION = False
    settings.MODELGATE_AUDIT_KEYS = ""
    assert check_audit_keys(None) == []
    settings.MODELGATE_PRODUCTION = True
    assert [w.id for w in check_audit_keys(None)] == ["modelgate.W102"]
    settings.MODELGATE_AUDIT_KEYS = K1
    assert check_audit_keys(None) == []


# Append-only in PostgreSQL ------------------------------------------------------------------

def raw(sql: str, params=()) -> None:
    with transaction.atomic(), connection.cursor() as cursor:  # a savepoint: the test goes on
        cursor.execute(sql, params)


@postgresql_only
@pytest.mark.parametrize("sql", [
    "UPDATE audit_auditevent SET action = 'test.rewritten' WHERE id = %s",
    "DELETE FROM audit_auditevent WHERE id = %s",
    "UPDATE audit_auditevent SET actor_id = NULL, object_repr = 'x' WHERE id = %s",
])
def test_postgresql_refuses_to_change_or_delete_an_event(sql):
    user = get_user_model().objects.create_user("ursula")
    event = record(1, actor=user)[0]
    with pytest.raises(DatabaseError, match="audit events are append-only"):
        raw(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "test.thing"


@postgresql_only
def test_postgresql_refuses_to_move_an_event_to_another_actor():
    users = [get_user_model().objects.create_user(name) for name in ("ursula", "ulrich")]
    event = record(1, actor=users[0])[0]
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE audit_auditevent SET actor_id = %s WHERE id = %s", [users[1].pk, event.pk])


@postgresql_only
@pytest.mark.django_db(transaction=True)  # the suite's flush (TRUNCATE) still works after it
def test_deleting_a_user_unlinks_their_events_and_the_chain_still_verifies():
    user = get_user_model().objects.create_user("ursula")
    events = record(2, actor=user) + record(1)
    user.delete()
    assert list(AuditEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("id")
                .values_list("actor_id", "actor_name")) == [(None, "ursula")] * 2 + [(None, "")]
    assert services.verify_chain() == (3, [])


GRANTS = [  # docs/operations.md, "The audit trail"
    'GRANT USAGE ON SCHEMA public TO "{role}"',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"',
    'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
    'REVOKE UPDATE, DELETE, TRUNCATE ON audit_auditevent FROM "{role}"',
    'GRANT UPDATE (actor_id) ON audit_auditevent TO "{role}"',
]


@postgresql_only
def test_the_documented_grants_let_the_application_role_delete_users_only():
    """As a non-superuser application role with the grants of docs/operations.md: users are
    deleted and events recorded as usual; rewriting events is refused by the grants."""
    role = f"modelgate_app_{uuid.uuid4().hex[:8]}"  # rolled back with the test
    user = get_user_model().objects.create_user("ursula")
    event = record(1, actor=user)[0]
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')
        for grant in GRANTS:
            cursor.execute(grant.format(role=role))
        cursor.execute(f'SET ROLE "{role}"')
    try:
        user.delete()
        record(1)
        with pytest.raises(DatabaseError, match="permission denied"):
            raw("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [event.pk])
        with pytest.raises(DatabaseError, match="permission denied"):
            raw("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert services.verify_chain() == (2, [])


@postgresql_only
def test_postgresql_refuses_truncation_to_a_role_granted_it():
    """Superusers may truncate (the test suite's flush; they could drop the trigger anyway);
    any other role is refused, even one the owner granted TRUNCATE."""
    role = f"modelgate_app_{uuid.uuid4().hex[:8]}"
    record(1)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')
        cursor.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        cursor.execute(f'GRANT SELECT, TRUNCATE ON audit_auditevent TO "{role}"')
        cursor.execute(f'SET ROLE "{role}"')
    try:
        with pytest.raises(DatabaseError, match="append-only: TRUNCATE of audit_auditevent"):
            raw("TRUNCATE audit_auditevent")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert AuditEvent.objects.count() == 1


# Checkpoints outside the database -----------------------------------------------------------

def store():
    return checkpoints.checkpoint_store()


def test_checkpoints_record_the_head_each_time_it_moves(settings):
    settings.MODELGATE_AUDIT_KEYS = K1
    assert services.write_checkpoint() is None  # an empty chain has no head
    events = record(3)
    first = services.write_checkpoint()
    assert (first.seq, first.last_id, first.hash, first.count, first.key_id) == (
        1, events[-1].pk, events[-1].hash, 3, "k1")
    assert services.write_checkpoint() is None  # the head has not moved
    record(2)
    from workers.monitoring import checkpoint_audit_chain

    assert checkpoint_audit_chain() == 2
    assert settings.CELERY_BEAT_SCHEDULE["checkpoint-audit-chain"]["task"] == \
        checkpoint_audit_chain.name
    body = json.loads((settings.MODELGATE_ARTIFACT_ROOT / "audit/checkpoints/00000002.json")
                      .read_bytes())
    assert body["count"] == 5 and body["key_id"] == "k1" and len(body["mac"]) == 64
    assert checkpoints.last_seq(store()) == 2
    out, _ = verify_command()
    assert "audit chain intact: 5 events verified, 2 checkpoints checked." in out


def test_last_seq_finds_the_newest_of_many_checkpoints(settings):
    for _ in range(13):
        record(1)
        services.write_checkpoint()
    assert checkpoints.last_seq(store()) == 13
    assert services.verify().checkpoints == 13


def test_events_deleted_from_the_end_past_a_checkpoint_are_found():
    events = record(4)
    services.write_checkpoint()
    with as_table_owner():
        AuditEvent.objects.filter(pk__gte=events[2].pk).delete()
    output = broken()
    assert (f"event {events[3].pk}: missing; checkpoint 1" in output
            and f"the chain now ends at event {events[1].pk}: events were deleted from the "
                "end of the chain" in output)
    # The chain that is left links and hashes correctly: only the checkpoint shows the cut.
    assert output.count("Problem:") == 1


def test_a_chain_emptied_past_a_checkpoint_is_found():
    record(2)
    services.write_checkpoint()
    with as_table_owner():
        AuditEvent.objects.all().delete()
    assert "the chain now is empty: events were deleted from the end" in broken()


def test_an_event_a_checkpoint_names_rewritten_is_found(settings):
    settings.MODELGATE_AUDIT_KEYS = K1
    events = record(3)
    services.write_checkpoint()
    # Someone holding the key itself rewrites the chain: only the checkpoint tells.
    rewrite_from(events[1].pk, rehash=services.compute_hash, edit=edit_action)
    assert services.verify_chain()[1] == [
        f"event {events[2].pk}: its hash differs from the one checkpoint 1 "
        f"({checkpoints.read(store(), 1).written_at}) recorded (it or the chain before it "
        "was rewritten)"]


def test_an_event_removed_before_a_checkpoints_head_is_found(settings):
    settings.MODELGATE_AUDIT_KEYS = K1
    events = record(4)
    services.write_checkpoint()
    with as_table_owner():
        AuditEvent.objects.filter(pk=events[0].pk).delete()
    # With the key, the chain is relinked; the count the checkpoint holds still differs.
    rewrite_from(events[1].pk, rehash=services.compute_hash)
    output = broken()
    assert f"event {events[3].pk}: 3 events end with it, checkpoint 1 counted 4" in output


def test_a_forged_or_moved_checkpoint_is_found(settings):
    settings.MODELGATE_AUDIT_KEYS = K1
    record(2)
    services.write_checkpoint()
    path = settings.MODELGATE_ARTIFACT_ROOT / "audit/checkpoints/00000001.json"
    body = json.loads(path.read_bytes())
    body["count"] = 1
    path.write_text(json.dumps(body))
    assert "checkpoint 1: its MAC does not verify (forged or altered)" in broken()

    record(1)
    checkpoint = services.write_checkpoint()
    path.write_bytes(checkpoint.to_bytes())  # checkpoint 2, copied into slot 1
    assert "checkpoint 1: it says it is checkpoint 2 (moved)" in broken()


def test_a_checkpoint_signed_with_an_unknown_key_is_reported(settings):
    settings.MODELGATE_AUDIT_KEYS = K1
    record(1)
    services.write_checkpoint()
    settings.MODELGATE_AUDIT_KEYS = f"{K2},{K1}"
    record(1)
    services.write_checkpoint()
    settings.MODELGATE_AUDIT_KEYS = K2  # k1 dropped: its events and its checkpoint go unchecked
    output = broken()
    assert "checkpoint 1: signed with key id 'k1', which MODELGATE_AUDIT_KEYS does not hold" \
        in output


def test_checkpoints_in_an_object_lock_bucket_are_retained():
    """The production store: a bucket with Object Lock and a default retention locks every
    checkpoint though the portal's store passes nothing about it (docs/operations.md)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from ops.storage import S3ArtifactStore

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}",
                              region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        client.create_bucket(Bucket="audit-checkpoints", ObjectLockEnabledForBucket=True)
        client.put_object_lock_configuration(Bucket="audit-checkpoints", ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
        bucket = S3ArtifactStore("audit-checkpoints", "modelgate", client=client)
        events = record(2)
        services.write_checkpoint(bucket)
        record(1)
        services.write_checkpoint(bucket)
        key = "modelgate/audit/checkpoints/00000002.json"
        head = client.head_object(Bucket="audit-checkpoints", Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
            client.delete_object(Bucket="audit-checkpoints", Key=key,
                                 VersionId=head["VersionId"])
        result = services.verify(bucket)
        assert (result.events, result.checkpoints, result.problems) == (3, 2, [])
        with as_table_owner():
            AuditEvent.objects.filter(pk__gt=events[0].pk).delete()
        assert any("events were deleted from the end" in p
                   for p in services.verify(bucket).problems)
    finally:
        server.stop()
