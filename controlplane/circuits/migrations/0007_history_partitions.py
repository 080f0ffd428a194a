"""Transitions and audit events in tables partitioned by range of ``at``, one
partition per UTC month, each with a DEFAULT partition (docs/history.md); the audit
trail append-only.

On PostgreSQL the index and constraint changes above are made on the old tables, which
are then rebuilt partitioned: renamed aside, their rows copied into the new tables,
dropped. The months their rows cover get partitions at once; the maintenance task
(``circuits.history_maintenance``) creates the months ahead. On SQLite the tables stay
plain and only the index and constraint changes apply.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TABLES = ("circuits_transition", "circuits_auditevent")

# Columns in the order of the old tables' copy; the new tables have the same ones.
COLUMNS = {
    "circuits_transition": (
        "id, instance_id, circuit_id, generation, seq, from_state, to_state, at, reason,"
        " failure_rate, calls, failures, config_version, received_at"
    ),
    "circuits_auditevent": (
        "id, actor_id, actor_name, action, service_id, target_type, target_id,"
        " target_repr, reason, before, after, at"
    ),
}

PARTITIONED = {
    "circuits_transition": """
CREATE SEQUENCE circuits_transition_id_seq AS bigint;
CREATE TABLE circuits_transition (
    id bigint NOT NULL DEFAULT nextval('circuits_transition_id_seq'),
    instance_id bigint NOT NULL REFERENCES circuits_instance (id) DEFERRABLE INITIALLY DEFERRED,
    circuit_id bigint NOT NULL REFERENCES circuits_circuit (id) DEFERRABLE INITIALLY DEFERRED,
    generation integer NOT NULL CHECK (generation >= 0),
    seq bigint NOT NULL,
    from_state varchar(16) NOT NULL,
    to_state varchar(16) NOT NULL,
    at timestamptz NOT NULL,
    reason varchar(32) NOT NULL,
    failure_rate double precision,
    calls integer CHECK (calls >= 0),
    failures integer CHECK (failures >= 0),
    config_version integer CHECK (config_version >= 0),
    received_at timestamptz NOT NULL,
    CONSTRAINT circuits_transition_pkey PRIMARY KEY (id, at),
    CONSTRAINT transition_unique_per_instance UNIQUE (instance_id, generation, seq, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE circuits_transition_id_seq OWNED BY circuits_transition.id;
CREATE INDEX transition_history_idx ON circuits_transition (circuit_id, at DESC, id DESC);
CREATE INDEX transition_at_idx ON circuits_transition (at, id);
CREATE INDEX transition_trip_idx ON circuits_transition (at, circuit_id)
    WHERE to_state = 'open';
CREATE TABLE circuits_transition_default PARTITION OF circuits_transition DEFAULT;
""",
    "circuits_auditevent": """
CREATE SEQUENCE circuits_auditevent_id_seq AS bigint;
CREATE TABLE circuits_auditevent (
    id bigint NOT NULL DEFAULT nextval('circuits_auditevent_id_seq'),
    actor_id integer REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED,
    actor_name varchar(150) NOT NULL,
    action varchar(32) NOT NULL,
    service_id bigint REFERENCES circuits_service (id) DEFERRABLE INITIALLY DEFERRED,
    target_type varchar(50) NOT NULL,
    target_id varchar(64) NOT NULL,
    target_repr varchar(500) NOT NULL,
    reason text NOT NULL,
    before jsonb,
    after jsonb,
    at timestamptz NOT NULL,
    CONSTRAINT circuits_auditevent_pkey PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE circuits_auditevent_id_seq OWNED BY circuits_auditevent.id;
CREATE INDEX audit_at_idx ON circuits_auditevent (at, id);
CREATE INDEX audit_target_idx ON circuits_auditevent (target_type, target_id, at DESC, id DESC);
CREATE INDEX audit_service_idx ON circuits_auditevent (service_id, at);
CREATE INDEX audit_actor_idx ON circuits_auditevent (actor_id);
CREATE TABLE circuits_auditevent_default PARTITION OF circuits_auditevent DEFAULT;
""",
}

# The audit trail is append-only. An UPDATE may only clear actor_id or service_id (what
# deleting the user or the service does); a DELETE only runs in a transaction that set
# switchyard.audit_retention to 'on' (retention: controlplane/circuits/maintenance.py).
# Dropping a whole partition fires no row trigger: retention does that too.
APPEND_ONLY = """
CREATE OR REPLACE FUNCTION switchyard_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('switchyard.audit_retention', true) = 'on' THEN
            RETURN OLD;
        END IF;
    ELSIF (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id)
        AND (NEW.service_id IS NULL OR NEW.service_id = OLD.service_id)
        AND to_jsonb(NEW) - 'actor_id' - 'service_id'
            = to_jsonb(OLD) - 'actor_id' - 'service_id' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: % of audit event % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON circuits_auditevent
    FOR EACH ROW EXECUTE FUNCTION switchyard_audit_append_only();
"""


def _constraints_and_indexes(cursor, table):
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass"
        " AND contype IN ('p', 'u', 'f')",
        [table],
    )
    constraints = [row[0] for row in cursor.fetchall()]
    cursor.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
        [table],
    )
    return constraints, [row[0] for row in cursor.fetchall()]


def _set_aside(cursor, table, aside):
    """Rename ``table`` to ``aside`` without its keys, indexes and id sequence (their
    names go to the new table); the next id to hand out."""
    cursor.execute(f"SELECT COALESCE(max(id), 0) FROM {table}")
    (last,) = cursor.fetchone()
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    (sequence,) = cursor.fetchone()
    if sequence is not None:
        cursor.execute(f"SELECT last_value FROM {sequence}")
        last = max(last, cursor.fetchone()[0])
    constraints, indexes = _constraints_and_indexes(cursor, table)
    for name in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    cursor.execute(f"DROP TRIGGER IF EXISTS audit_append_only ON {table}")
    cursor.execute(
        "SELECT attidentity <> '' FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attname = 'id'",
        [table],
    )
    if cursor.fetchone()[0]:
        cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id DROP IDENTITY")
    else:
        cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id DROP DEFAULT")
        cursor.execute(f"DROP SEQUENCE IF EXISTS {table}_id_seq")
    cursor.execute(f"ALTER TABLE {table} RENAME TO {aside}")
    return last


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from datetime import UTC, datetime, timedelta

    from controlplane.core import partitions

    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            last = _set_aside(cursor, table, f"{table}_unpartitioned")
            cursor.execute(PARTITIONED[table])
            cursor.execute("SELECT setval(%s, %s, %s)", [f"{table}_id_seq", max(last, 1), last > 0])
            cursor.execute(
                f"INSERT INTO {table} ({COLUMNS[table]})"
                f" SELECT {COLUMNS[table]} FROM {table}_unpartitioned"
            )
            cursor.execute(f"DROP TABLE {table}_unpartitioned")
            cursor.execute(f"SELECT min(at) FROM {table}")
            first = cursor.fetchone()[0]
            now = datetime.now(UTC)
            partitions.ensure(table, min(first or now, now), now + timedelta(days=62), "month")
        cursor.execute(APPEND_ONLY)


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, model in zip(TABLES, ("Transition", "AuditEvent"), strict=True):
            last = _set_aside(cursor, table, f"{table}_partitioned")
            schema_editor.create_model(apps.get_model("circuits", model))
            cursor.execute(
                f"INSERT INTO {table} ({COLUMNS[table]})"
                f" SELECT {COLUMNS[table]} FROM {table}_partitioned"
            )
            cursor.execute(f"DROP TABLE {table}_partitioned")
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)",
                [table, max(last, 1), last > 0],
            )
        cursor.execute("DROP FUNCTION switchyard_audit_append_only()")


class Migration(migrations.Migration):
    dependencies = [
        ("circuits", "0006_traffic_rollup"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="transition",
            name="transition_unique_per_instance",
        ),
        migrations.RemoveIndex(
            model_name="auditevent",
            name="audit_target_idx",
        ),
        migrations.RemoveIndex(
            model_name="transition",
            name="transition_history_idx",
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("override.force", "force"),
                    ("override.release", "release"),
                    ("override.expire", "override expired"),
                    ("config.create", "config version created"),
                    ("agent_token.create", "agent token created"),
                    ("agent_token.revoke", "agent token revoked"),
                    ("api_token.create", "API token created"),
                    ("api_token.revoke", "API token revoked"),
                    ("history.retention", "history removed by retention"),
                ],
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="at",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="service",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="circuits.service",
            ),
        ),
        migrations.AlterField(
            model_name="transition",
            name="circuit",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="transitions",
                to="circuits.circuit",
            ),
        ),
        migrations.AlterField(
            model_name="transition",
            name="instance",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="transitions",
                to="circuits.instance",
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["at", "id"], name="audit_at_idx"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                fields=["target_type", "target_id", "-at", "-id"], name="audit_target_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["service", "at"], name="audit_service_idx"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor"], name="audit_actor_idx"),
        ),
        migrations.AddIndex(
            model_name="transition",
            index=models.Index(fields=["circuit", "-at", "-id"], name="transition_history_idx"),
        ),
        migrations.AddIndex(
            model_name="transition",
            index=models.Index(fields=["at", "id"], name="transition_at_idx"),
        ),
        migrations.AddConstraint(
            model_name="transition",
            constraint=models.UniqueConstraint(
                fields=("instance", "generation", "seq", "at"),
                name="transition_unique_per_instance",
            ),
        ),
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
