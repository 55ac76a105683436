"""SM2 signatures of the audit chain head (S3): someone who can write the database, edits a record and
recomputes every later hash and the head row is still caught, because the hashes at the signed positions no
longer match signatures they cannot make without the private key (wrapped by the master key, outside the
database)."""

import datetime as dt
import os
import shutil
import subprocess
import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from shuzheng.audit import services as audit
from shuzheng.audit import signing
from shuzheng.audit.models import AuditHead, AuditRecord, HeadSignature
from shuzheng.core.crypto import DecryptionError
from shuzheng.core.errors import Forbidden


@pytest.fixture(autouse=True)
def english():
    from django.utils import translation

    with translation.override("en"):
        yield


@pytest.fixture
def witness_cleanup():
    """Tests that let the witness be written (commit callbacks) remove it again: their signatures are rolled
    back with the test's transaction, and a witness naming them would fail every later verification."""
    saved = signing.witness_path().read_bytes() if signing.witness_path().exists() else None
    yield
    if saved is None:
        signing.remove_witness()
    else:
        signing.witness_path().write_bytes(saved)


def _bypass_triggers():
    """What someone with write access to the database would do first (as in test_audit.py)."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only")
            cur.execute("ALTER TABLE audit_head_signature DISABLE TRIGGER audit_head_signature_append_only")
        else:
            for name in ("audit_record_no_update", "audit_record_no_delete", "audit_head_signature_no_update",
                         "audit_head_signature_no_delete"):
                cur.execute(f"DROP TRIGGER IF EXISTS {name}")


def _write(n, actor, action="test.event"):
    for i in range(n):
        with transaction.atomic():
            audit.record(actor, action, object_type="test", object_id=str(i), summary={"i": i})


def _head():
    return AuditHead.objects.get(id=1).seq


def _rewrite_from(seq: int, **changes):
    """Edits record `seq` and recomputes the hash of it and of every record after it, then the head row: the
    whole chain is consistent again, as a careful attacker would leave it."""
    _bypass_triggers()
    rows = list(AuditRecord.objects.filter(seq__gte=seq).order_by("seq").values_list(*audit.FIELDS[:-1]))
    prev = AuditRecord.objects.get(seq=seq - 1).hash
    with connection.cursor() as cur:
        for i, fields in enumerate(rows):
            fields = list(fields)
            if i == 0:
                for name, value in changes.items():
                    fields[audit.FIELDS.index(name)] = value
            digest = audit.chain_hash(prev, audit.canonical(*fields))
            cur.execute("UPDATE audit_record SET actor = %s, action = %s, summary = %s, hash = %s WHERE seq = %s",
                        [fields[2], fields[5], fields[8], digest, fields[0]])
            prev = digest
        cur.execute("UPDATE audit_head SET hash = %s WHERE id = 1", [prev])


def test_signing_records_the_position_and_verify_reports_what_is_unsigned(demo):
    before = audit.verify()
    assert before.intact and before.signatures == 0 and before.signed_seq is None
    assert before.unsigned == before.records
    first = audit.sign_head()
    assert first is not None and first.seq == _head() and first.key_fingerprint == signing.keypair().fingerprint
    assert audit.sign_head() is None  # the head has not moved: nothing new to sign
    _write(3, demo.cli())
    result = audit.verify()
    assert result.intact and result.signatures == 1
    assert result.signed_seq == first.seq and result.unsigned == 3
    second = audit.sign_head()
    assert second.seq == first.seq + 3
    result = audit.verify()
    assert result.intact and result.signatures == 2 and result.signed_seq == second.seq and result.unsigned == 0
    assert result.as_dict()["key_fingerprint"] == first.key_fingerprint


def test_rewriting_a_record_and_recomputing_the_whole_chain_and_head_is_caught_by_the_signature(demo):
    _write(4, demo.cli())
    signed = audit.sign_head()
    _write(3, demo.cli())
    target = signed.seq - 2
    _rewrite_from(target, actor="someone-else")
    # The chain alone no longer sees anything: every hash and the head agree again.
    chain_only = audit._verify_chain()
    assert chain_only.intact, chain_only.reason
    result = audit.verify()
    assert not result.intact
    assert result.first_bad_seq == signed.seq
    assert "signature" in result.reason and f"record {signed.seq}" in result.reason
    assert "recomputed" in result.reason
    # And the signer refuses to sign over the rewritten history.
    with pytest.raises(audit.SigningRefused) as refused:
        audit.sign_head()
    assert "rewritten" in refused.value.detail


def test_records_after_the_last_signature_are_covered_by_the_chain_only(demo):
    signed = audit.sign_head()
    _write(3, demo.cli())
    # An edit without recomputing is caught by the chain, as before.
    _bypass_triggers()
    with connection.cursor() as cur:
        cur.execute("UPDATE audit_record SET actor = %s WHERE seq = %s", ["x", signed.seq + 2])
    result = audit.verify()
    assert not result.intact and result.first_bad_seq == signed.seq + 2
    # A recomputed edit after the newest signature is the window the five-minute signing leaves: verify
    # says how many records it covers by the chain alone.
    _rewrite_from(signed.seq + 2, actor="someone-else")
    result = audit.verify()
    assert result.intact and result.signed_seq == signed.seq and result.unsigned == 3


def test_cutting_the_tail_after_it_was_signed_is_caught(demo):
    _write(3, demo.cli())
    signed = audit.sign_head()
    _bypass_triggers()
    with connection.cursor() as cur:
        cur.execute("DELETE FROM audit_record WHERE seq > %s", [signed.seq - 2])
        cur.execute("UPDATE audit_head SET seq = %s, hash = (SELECT hash FROM audit_record WHERE seq = %s) WHERE id = 1",
                    [signed.seq - 2, signed.seq - 2])
    assert audit._verify_chain().intact
    result = audit.verify()
    assert not result.intact and result.first_bad_seq == signed.seq
    assert "no longer in the trail" in result.reason
    with pytest.raises(audit.SigningRefused) as refused:
        audit.sign_head()
    assert "records were removed" in refused.value.detail


def test_forged_or_foreign_signatures_are_refused(demo):
    _write(2, demo.cli())
    key = signing.keypair()
    seq = _head()
    digest = AuditRecord.objects.get(seq=seq).hash
    at = dt.datetime.now(dt.timezone.utc)
    # A row with a made-up signature, under our key's fingerprint.
    HeadSignature.objects.create(seq=seq, hash=digest, signed_at=at, signature="30" + "06020101020101",
                                 key_fingerprint=key.fingerprint)
    result = audit.verify()
    assert not result.intact and result.first_bad_seq == seq and "not a valid SM2 signature" in result.reason


def test_a_signature_by_another_key_is_refused(demo):
    public, private = __import__("gmssl_pyx").sm2_key_generate()
    other = signing.KeyPair(public, private, signing.fingerprint(public))
    seq = _head()
    digest = AuditRecord.objects.get(seq=seq).hash
    at = dt.datetime.now(dt.timezone.utc)
    HeadSignature.objects.create(seq=seq, hash=digest, signed_at=at, signature=signing.sign(other, seq, digest, at),
                                 key_fingerprint=other.fingerprint)
    result = audit.verify()
    assert not result.intact and f"key {other.fingerprint}" in result.reason
    # Checked against that key instead (what an auditor would do with the wrong file), the home's own
    # signatures are the foreign ones.
    assert audit.verify(public_key=public).intact


def test_an_outside_auditor_checks_with_the_exported_public_key(demo, tmp_path):
    signed = audit.sign_head()
    exported = signing.public_pem(signing.keypair().public)
    assert "-----BEGIN PUBLIC KEY-----" in exported and signing.keypair().fingerprint in exported
    public = signing.parse_public_key(exported)
    result = audit.verify(public_key=public)
    assert result.intact and result.signed_seq == signed.seq
    # A key that did not make the signatures: every signature is named as made by another key.
    stranger = signing.parse_public_key(signing.public_pem(__import__("gmssl_pyx").sm2_key_generate()[0]))
    result = audit.verify(public_key=stranger)
    assert not result.intact and "was made with key" in result.reason
    with pytest.raises(signing.SigningKeyError):
        signing.parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(signing.SigningKeyError):
        signing.parse_public_key("00" * 64)  # not a point on the curve
    if shutil.which("openssl"):
        # Any SM2 implementation checks a signature from the PEM and the documented message: OpenSSL 3.
        (tmp_path / "key.pem").write_text(exported)
        (tmp_path / "msg").write_bytes(signing.message(signed.seq, signed.hash, signed.signed_at))
        (tmp_path / "sig").write_bytes(bytes.fromhex(signed.signature))
        done = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-in", "msg",
                               "-sigfile", "sig", "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"],
                              cwd=tmp_path, capture_output=True, text=True)
        assert "Signature Verified Successfully" in done.stdout, done.stderr


def test_deleting_signatures_is_caught_by_the_witness_outside_the_database(
        demo, witness_cleanup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        signed = audit.sign_head()
    witness = signing.read_witness()
    assert witness["seq"] == signed.seq and witness["signature"] == signed.signature
    assert oct(os.stat(signing.witness_path()).st_mode & 0o777) == "0o600"
    assert audit.verify().intact
    _bypass_triggers()
    with connection.cursor() as cur:
        cur.execute("DELETE FROM audit_head_signature")
    result = audit.verify()
    assert not result.intact and result.first_bad_seq == signed.seq
    assert "missing from the database" in result.reason and signing.WITNESS_FILE in result.reason


def test_the_key_file_holds_the_private_key_wrapped_and_is_private(db):
    from shuzheng.security import keys

    key = signing.keypair()
    for path in (signing.key_path(), signing.public_path()):
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    blob = signing.key_path().read_bytes()
    # One wrapped blob and nothing else: a master-key rotation re-wraps it like every wrapped key file.
    assert blob[:4] == keys.MAGIC and keys.wrapped_by(blob) == keys.current_fingerprint()
    assert key.private not in blob and key.private.hex().encode() not in blob
    with pytest.raises(DecryptionError):  # bound to its purpose: not usable as some other key
        keys.unwrap(blob, "datakey:1")
    assert keys.unwrap(blob, signing.PURPOSE) == key.private
    assert signing.parse_public_key(signing.public_path().read_text()) == key.public
    assert key.fingerprint in signing.public_path().read_text()


def test_a_public_key_file_that_does_not_match_the_private_key_is_refused(db, settings, tmp_path):
    from shuzheng.security import keys

    settings.HOME = tmp_path
    keys.forget()
    try:
        signing.keypair()
        other = __import__("gmssl_pyx").sm2_key_generate()[0]
        signing.public_path().write_text(signing.public_pem(other))
        with pytest.raises(signing.SigningKeyError, match="is not the public key"):
            signing.keypair()
        with pytest.raises(audit.SigningRefused):
            audit.sign_head()
    finally:
        keys.forget()


def test_concurrent_first_use_creates_one_key(settings, tmp_path):
    from shuzheng.security import keys

    settings.HOME = tmp_path
    keys.forget()
    try:
        barrier = threading.Barrier(8)
        found, errors = [], []

        def first_use():
            try:
                barrier.wait()
                found.append(signing.keypair().fingerprint)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(set(found)) == 1
        assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
            "audit-sm2.key", "audit-sm2.lock", "audit-sm2.pub", "master.key"]
    finally:
        keys.forget()


def test_the_periodic_task_signs_only_when_the_head_moved(demo):
    from shuzheng.audit.tasks import sign_chain_head

    first = sign_chain_head.call_local()
    assert first["signed"] is True and first["seq"] == _head()
    assert sign_chain_head.call_local() == {"signed": False, "seq": None}
    _write(1, demo.cli())
    assert sign_chain_head.call_local()["seq"] == _head()


def test_the_periodic_task_logs_a_refusal(demo, caplog):
    from shuzheng.audit.tasks import sign_chain_head

    audit.sign_head()
    _write(2, demo.cli())
    _rewrite_from(_head() - 3, actor="someone-else")
    outcome = sign_chain_head.call_local()
    assert outcome["signed"] is False and "rewritten" in outcome["reason"]
    assert any("not signed" in r.getMessage() for r in caplog.records)


def test_signatures_are_append_only(demo):
    from django.db import DatabaseError

    made = audit.sign_head()
    with pytest.raises(PermissionError):
        made.save()
    with pytest.raises(PermissionError):
        HeadSignature.objects.all().delete()
    for sql in ("UPDATE audit_head_signature SET hash = 'x' WHERE seq = %s",
                "DELETE FROM audit_head_signature WHERE seq = %s"):
        with pytest.raises(DatabaseError):
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(sql, [made.seq])


def test_only_audit_administrators_see_the_signatures(demo):
    made = audit.sign_head()
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(demo.user("auditor"))
    listed = client.get("/api/v1/audit/signatures?limit=5")
    assert listed.status_code == 200, listed.content
    item = listed.json()["items"][0]
    assert item["seq"] == made.seq and item["signature"] == made.signature and item["key_fingerprint"]
    page = client.get("/audit/").content.decode()
    assert f"record No. {made.seq}" in page and made.key_fingerprint in page
    verified = client.get("/api/v1/audit/verify").json()
    assert verified["intact"] and verified["signed_seq"] == made.seq
    for name in ("admin", "secadmin", "staff"):
        other = Client(headers={"Accept-Language": "en"})
        other.force_login(demo.user(name))
        assert other.get("/api/v1/audit/signatures").status_code == 403
        with pytest.raises(Forbidden):
            audit.signatures(demo.actor(name))
