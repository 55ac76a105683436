"""SM2-signed chain heads (audit.HeadSignature), append-only in the database itself like audit_record."""

from django.db import migrations, models

SQLITE = [
    """CREATE TRIGGER audit_head_signature_no_update BEFORE UPDATE ON audit_head_signature
       BEGIN SELECT RAISE(ABORT, 'audit_head_signature is append-only'); END""",
    """CREATE TRIGGER audit_head_signature_no_delete BEFORE DELETE ON audit_head_signature
       BEGIN SELECT RAISE(ABORT, 'audit_head_signature is append-only'); END""",
]
SQLITE_REVERSE = ["DROP TRIGGER audit_head_signature_no_update", "DROP TRIGGER audit_head_signature_no_delete"]

POSTGRES = [
    """CREATE FUNCTION audit_head_signature_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_head_signature is append-only'; END $$""",
    """CREATE TRIGGER audit_head_signature_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_head_signature
       FOR EACH STATEMENT EXECUTE FUNCTION audit_head_signature_append_only()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER audit_head_signature_append_only ON audit_head_signature",
    "DROP FUNCTION audit_head_signature_append_only()",
]


def forwards(apps, schema_editor):
    for sql in POSTGRES if schema_editor.connection.vendor == "postgresql" else SQLITE:
        schema_editor.execute(sql)


def backwards(apps, schema_editor):
    for sql in POSTGRES_REVERSE if schema_editor.connection.vendor == "postgresql" else SQLITE_REVERSE:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.CreateModel(
            name="HeadSignature",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("seq", models.BigIntegerField(help_text="the last record covered by the signature", unique=True)),
                ("hash", models.CharField(help_text="the SM3 chain hash of record `seq`", max_length=64)),
                ("signed_at", models.DateTimeField()),
                ("signature", models.CharField(help_text="DER-encoded SM2 signature, hex", max_length=160)),
                ("key_fingerprint", models.CharField(
                    help_text="SM3 of the public key 04||X||Y, first 8 bytes, hex", max_length=16)),
            ],
            options={"db_table": "audit_head_signature", "ordering": ["-seq"]},
        ),
        migrations.RunPython(forwards, backwards),
    ]
