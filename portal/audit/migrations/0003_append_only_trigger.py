"""On PostgreSQL, audit events can no longer be updated, deleted or truncated.

The application's role may write every table, the audit table included; this trigger makes
the table append-only for it. One update stays allowed: deleting a user sets the
``actor_id`` of that user's events to NULL (``on_delete=SET_NULL``; the hash covers
``actor_name``, never the link), so an update that changes ``actor_id`` to NULL and nothing
else passes. TRUNCATE is refused too, except to a superuser (who could disable the trigger
anyway; it is how the test suite and a restore empty the tables). The table's owner can
still drop the trigger: that is what the keyed hashes and the checkpoints outside the
database are for (decision 49, docs/operations.md for the owner and application roles).

A later migration that must rewrite audit rows runs as the owner and disables the trigger
around its change (``ALTER TABLE audit_auditevent DISABLE TRIGGER audit_append_only``).
SQLite (the embedded demo) has only the model's own guard.
"""

from django.db import migrations

FORWARD = ["""
CREATE FUNCTION audit_refuse_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.actor_id IS NOT NULL AND NEW.actor_id IS NULL
                AND to_jsonb(NEW) - 'actor_id' = to_jsonb(OLD) - 'actor_id' THEN
            RETURN NEW;  -- the actor's account was deleted (on_delete=SET_NULL)
        END IF;
    ELSIF TG_OP = 'TRUNCATE' THEN
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % of % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only an actor_id set to NULL (a deleted user) may change';
END;
$$""",
    "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_auditevent"
    " FOR EACH ROW EXECUTE FUNCTION audit_refuse_changes()",
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_auditevent"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_changes()",
]

BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_no_truncate ON audit_auditevent",
    "DROP TRIGGER IF EXISTS audit_append_only ON audit_auditevent",
    "DROP FUNCTION IF EXISTS audit_refuse_changes()",
]


def _run(schema_editor, statements):
    if schema_editor.connection.vendor != "postgresql":
        return
    for statement in statements:  # no parameters: the function's '%' are its own
        schema_editor.execute(statement, params=None)


def install(apps, schema_editor):
    _run(schema_editor, FORWARD)


def remove(apps, schema_editor):
    _run(schema_editor, BACKWARD)


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0002_auditevent_key_id"),
    ]

    operations = [
        migrations.RunPython(install, remove, elidable=False),
    ]
