"""Database-level append-only guard: UPDATE and DELETE on audit_record fail in the database itself, so a
bug or an ORM bypass inside the application cannot rewrite history. Someone with DDL rights can drop the
trigger; the SM3 chain (and, later, the SM2-signed head) is what catches them."""

from django.db import migrations

SQLITE = [
    """CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record
       BEGIN SELECT RAISE(ABORT, 'audit_record is append-only'); END""",
    """CREATE TRIGGER audit_record_no_delete BEFORE DELETE ON audit_record
       BEGIN SELECT RAISE(ABORT, 'audit_record is append-only'); END""",
]
SQLITE_REVERSE = ["DROP TRIGGER audit_record_no_update", "DROP TRIGGER audit_record_no_delete"]

POSTGRES = [
    """CREATE FUNCTION audit_record_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_record is append-only'; END $$""",
    """CREATE TRIGGER audit_record_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_record
       FOR EACH STATEMENT EXECUTE FUNCTION audit_record_append_only()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER audit_record_append_only ON audit_record",
    "DROP FUNCTION audit_record_append_only()",
]


def forwards(apps, schema_editor):
    statements = POSTGRES if schema_editor.connection.vendor == "postgresql" else SQLITE
    for sql in statements:
        schema_editor.execute(sql)


def backwards(apps, schema_editor):
    statements = POSTGRES_REVERSE if schema_editor.connection.vendor == "postgresql" else SQLITE_REVERSE
    for sql in statements:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
