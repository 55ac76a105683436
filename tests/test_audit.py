"""The audit trail: every change recorded in its own transaction, append-only, and any direct database
edit, deletion, insertion or reordering caught by `verify()` / `shuzheng audit verify`."""

import subprocess
import sys

import pytest
from django.db import connection, transaction

from shuzheng.audit import services as audit
from shuzheng.audit.models import AuditHead, AuditRecord
from shuzheng.core.errors import Forbidden
from shuzheng.org import services


@pytest.fixture(autouse=True)
def english():
    """Reasons are asserted in English (the source language); the default language is zh-hans."""
    from django.utils import translation

    with translation.override("en"):
        yield


def _bypass_triggers():
    """What someone with write access to the database itself would do first."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only")
        else:
            cur.execute("DROP TRIGGER audit_record_no_update")
            cur.execute("DROP TRIGGER audit_record_no_delete")


def _write(n, actor):
    for i in range(n):
        with transaction.atomic():
            audit.record(actor, "test.event", object_type="test", object_id=str(i), summary={"i": i})


def _last_seq():
    return AuditHead.objects.get(id=1).seq


def test_demo_chain_is_intact(db):
    result = audit.verify()
    assert result.intact, result.reason
    assert result.records == AuditRecord.objects.count() > 100


def test_state_change_and_its_record_commit_together(demo):
    before = _last_seq()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.update_user(demo.cli(), "staff", {"full_name": "改名"})
            raise RuntimeError("the change fails after the audit record was written")
    assert _last_seq() == before
    assert demo.user("staff").full_name != "改名"
    services.update_user(demo.cli(), "staff", {"full_name": "改名"})
    rec = AuditRecord.objects.get(seq=before + 1)
    assert rec.action == "user.update" and "改名" in rec.summary and rec.actor.startswith("cli:")
    assert audit.verify().intact


def test_records_cannot_be_changed_through_the_application(demo):
    rec = AuditRecord.objects.order_by("-seq").first()
    rec.summary = "{}"
    with pytest.raises(PermissionError):
        rec.save()
    with pytest.raises(PermissionError):
        rec.delete()
    with pytest.raises(PermissionError):
        AuditRecord.objects.filter(seq=rec.seq).update(summary="{}")
    with pytest.raises(PermissionError):
        AuditRecord.objects.all().delete()


def test_database_triggers_refuse_update_and_delete(db):
    from django.db import DatabaseError

    seq = _last_seq()
    for sql in ("UPDATE audit_record SET summary = '{}' WHERE seq = %s", "DELETE FROM audit_record WHERE seq = %s"):
        with pytest.raises(DatabaseError):
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(sql, [seq])
    assert audit.verify().intact


@pytest.mark.parametrize("tamper", ["edit", "edit_time", "delete", "delete_tail", "insert", "insert_before", "reorder"])
def test_tampering_is_detected_and_named(demo, tamper):
    _write(5, demo.cli())
    last = _last_seq()
    target = last - 2
    _bypass_triggers()
    with connection.cursor() as cur:
        if tamper == "edit":
            cur.execute("UPDATE audit_record SET actor = %s WHERE seq = %s", ["someone-else", target])
            expected = target
        elif tamper == "edit_time":
            cur.execute("UPDATE audit_record SET ts = ts - 3600000000 WHERE seq = %s", [target])
            expected = target
        elif tamper == "delete":
            cur.execute("DELETE FROM audit_record WHERE seq = %s", [target])
            expected = target
        elif tamper == "delete_tail":
            cur.execute("DELETE FROM audit_record WHERE seq = %s", [last])
            expected = last
        elif tamper == "insert":
            # A forged record with a correct-looking hash, appended after the head.
            rec = AuditRecord.objects.get(seq=last)
            body = audit.canonical(last + 1, rec.ts + 1, "forger", "", "", "user.create", "", "", "{}")
            cur.execute(
                "INSERT INTO audit_record (seq, ts, actor, actor_org, ip, action, object_type, object_id, summary, hash)"
                " VALUES (%s, %s, 'forger', '', '', 'user.create', '', '', '{}', %s)",
                [last + 1, rec.ts + 1, audit.chain_hash(rec.hash, body)],
            )
            expected = last + 1
        elif tamper == "insert_before":
            # A forged record slipped in before the first one.
            cur.execute(
                "INSERT INTO audit_record (seq, ts, actor, actor_org, ip, action, object_type, object_id, summary, hash)"
                " VALUES (0, 0, 'forger', '', '', 'user.create', '', '', '{}', %s)", ["0" * 64])
            expected = 0
        elif tamper == "reorder":
            cur.execute("UPDATE audit_record SET seq = -1 WHERE seq = %s", [target])
            cur.execute("UPDATE audit_record SET seq = %s WHERE seq = %s", [target, target + 1])
            cur.execute("UPDATE audit_record SET seq = %s WHERE seq = -1", [target + 1])
            expected = target
    result = audit.verify()
    assert not result.intact
    assert result.first_bad_seq == expected, result.reason


def test_recomputing_the_chain_after_an_insert_in_the_middle_is_caught_by_the_head(demo):
    """Rewriting every later hash still leaves the head row (and, with SM2 signatures later, its
    signature) disagreeing, unless the attacker edits that too — the case issue S3/SM2 signing covers."""
    _write(3, demo.cli())
    last = _last_seq()
    _bypass_triggers()
    rows = list(AuditRecord.objects.order_by("seq").values_list(*audit.FIELDS[:-1]))
    with connection.cursor() as cur:
        cur.execute("DELETE FROM audit_record WHERE seq >= %s", [last - 1])
        prev = AuditRecord.objects.get(seq=last - 2).hash
        forged = [(last - 1, rows[-2][1], "forger", "", "", "x", "", "", "{}"), rows[-2], rows[-1]]
        for i, fields in enumerate(forged):
            fields = (last - 1 + i,) + tuple(fields[1:])
            digest = audit.chain_hash(prev, audit.canonical(*fields))
            cur.execute("INSERT INTO audit_record VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", [*fields, digest])
            prev = digest
    result = audit.verify()
    assert not result.intact and "head" in result.reason


CONCURRENT_WRITERS = """
import threading
from django.db import connections, transaction
from shuzheng.audit import services as audit
from shuzheng.org.services import Actor

errors = []

def writer(k):
    try:
        for i in range(25):
            with transaction.atomic():
                audit.record(Actor(label=f"writer-{k}", ip="127.0.0.1"), "test.event", object_id=str(i))
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connections.close_all()

threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(len(errors), errors[:1])
"""


def _django_script(platform, script: str) -> str:
    """Runs `script` with Django set up against the platform's database (a separate process, as the
    server's own workers are)."""
    prelude = "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
    done = subprocess.run([sys.executable, "-c", prelude + script], env=platform.env, capture_output=True,
                          text=True, timeout=300, check=True)
    return done.stdout


def test_concurrent_writers_never_fork_the_chain(platform):
    assert _django_script(platform, CONCURRENT_WRITERS).strip() == "0 []"
    result = platform.cli("audit", "verify", "--json")
    assert '"intact": true' in result.stdout
    seqs = _django_script(platform, (
        "from shuzheng.audit.models import AuditRecord\n"
        "s = list(AuditRecord.objects.order_by('seq').values_list('seq', flat=True))\n"
        "print(s == list(range(1, len(s) + 1)), AuditRecord.objects.filter(action='test.event').count())\n"
    ))
    assert seqs.split() == ["True", "200"]


def test_only_audit_administrators_read_the_trail(demo):
    query = audit.AuditQuery(action="auth.")
    assert audit.search(demo.actor("auditor"), query).model is AuditRecord
    for name in ("admin", "secadmin", "leader", "officer-civil-affairs", "staff"):
        with pytest.raises(Forbidden):
            audit.search(demo.actor(name), query)


def test_export_escapes_formulas_and_is_itself_audited(demo):
    services.update_user(demo.cli(), "staff", {"full_name": "=HYPERLINK(\"x\")"})
    before = _last_seq()
    text = "".join(audit.export(demo.actor("auditor"), audit.AuditQuery(action="user.update")))
    assert text.startswith("\ufeffseq,time_utc,")
    rows = [line for line in text.splitlines()[1:] if line]
    assert rows and all(not line.startswith(("=", "+", "-", "@")) for line in rows)
    assert AuditRecord.objects.get(seq=before + 1).action == "audit.export"


def test_csv_cells_are_escaped():
    assert audit.csv_safe("=1+1") == "'=1+1"
    assert audit.csv_safe("@SUM(A1)") == "'@SUM(A1)"
    assert audit.csv_safe("-3") == "'-3"
    assert audit.csv_safe("张三") == "张三"


TAMPER_SEQ_7 = """
from django.db import connection
c = connection.cursor()
if connection.vendor == "postgresql":
    c.execute("ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only")
else:
    c.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
c.execute("UPDATE audit_record SET action = %s WHERE seq = 7", [ACTION])
if connection.vendor == "postgresql":
    c.execute("ALTER TABLE audit_record ENABLE TRIGGER audit_record_append_only")
else:
    from importlib import import_module
    c.execute(import_module("shuzheng.audit.migrations.0002_append_only_triggers").SQLITE[0])
"""


def test_cli_verify_exit_codes(platform):
    ok = platform.cli("audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    original = _django_script(platform, "from shuzheng.audit.models import AuditRecord\n"
                                        "print(AuditRecord.objects.get(seq=7).action)").strip()
    # Edit a record behind the application's back, as a database administrator could.
    _django_script(platform, "ACTION = 'user.delete'\n" + TAMPER_SEQ_7)
    try:
        bad = platform.cli("audit", "verify", check=False)
        assert bad.returncode == 1
        assert "record 7" in bad.stderr
    finally:
        _django_script(platform, f"ACTION = {original!r}\n" + TAMPER_SEQ_7)
    assert platform.cli("audit", "verify").returncode == 0


def test_nightly_verification_job_records_its_outcome(db):
    from shuzheng.audit.tasks import nightly_chain_verification

    outcome = nightly_chain_verification.call_local()
    assert outcome["intact"] is True
    last = AuditRecord.objects.order_by("-seq").first()
    assert last.action == "audit.verify" and last.actor == "worker" and '"intact":true' in last.summary
