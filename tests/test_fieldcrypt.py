"""Encryption at rest (S2): SM4-GCM primitives, envelope keys, sealed warehouse items with blind indexes, the
gateway answering over them, tamper detection, and data-key rotation in process."""

from __future__ import annotations

import os

import duckdb
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from data_helpers import PEOPLE_ITEMS, person, table_resource, write_csv
from hypothesis import given, settings
from hypothesis import strategies as st
from sharing_helpers import application_data, call, records, system, verify

from shuzheng.core.crypto import DecryptionError, sm4_gcm_open, sm4_gcm_seal
from shuzheng.ingest import services as ingest
from shuzheng.security import fieldcrypt, keys, rotation
from shuzheng.security.models import DataKey, KeyState, Rotation
from shuzheng.sharing import services
from shuzheng.warehouse import lake

SEALED_ITEMS = [dict(i, level="important") if i["name"] in ("公民身份号码", "姓名") else dict(i) for i in PEOPLE_ITEMS]


# --------------------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=9000), st.binary(max_size=40))
def test_sm4_gcm_round_trip_and_interoperability(plaintext, aad):
    key = os.urandom(16)
    sealed = sm4_gcm_seal(key, plaintext, aad)
    assert sm4_gcm_open(key, sealed, aad) == plaintext
    # Whichever library sealed it (gmssl-pyx for short values, `cryptography` for long), the other opens it.
    nonce, body, tag = sealed[:12], sealed[12:-16], sealed[-16:]
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    assert decryptor.update(body) + decryptor.finalize() == plaintext


def test_tampering_or_a_wrong_key_is_detected_never_decrypted_to_garbage():
    key = os.urandom(16)
    sealed = sm4_gcm_seal(key, "130682199001011234".encode(), b"t\x1fitem")
    for i in (0, 12, len(sealed) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError):
            sm4_gcm_open(key, bytes(tampered), b"t\x1fitem")
    with pytest.raises(DecryptionError):
        sm4_gcm_open(os.urandom(16), sealed, b"t\x1fitem")
    with pytest.raises(DecryptionError):
        sm4_gcm_open(key, sealed, b"t\x1fother")  # moved to another item
    with pytest.raises(DecryptionError):
        sm4_gcm_open(key, sealed[:20], b"t\x1fitem")  # truncated


def test_master_key_file_and_wrapping(settings, tmp_path):
    settings.HOME = tmp_path
    keys.forget()
    try:
        blob = keys.wrap(b"k" * 48, "datakey:1:x")
        master = tmp_path / "keys" / "master.key"
        assert master.exists() and (master.stat().st_mode & 0o777) == 0o600
        assert ((tmp_path / "keys").stat().st_mode & 0o777) == 0o700
        assert keys.unwrap(blob, "datakey:1:x") == b"k" * 48
        with pytest.raises(DecryptionError):
            keys.unwrap(blob, "datakey:2:x")  # a wrapped key cannot stand in for another
        with pytest.raises(DecryptionError):
            keys.unwrap(blob[:-1] + bytes([blob[-1] ^ 1]), "datakey:1:x")
        # A master key from the environment takes precedence; blobs of the file's key then do not open.
        os.environ[keys.ENV] = os.urandom(16).hex()
        keys.forget()
        with pytest.raises(DecryptionError):
            keys.unwrap(blob, "datakey:1:x")
    finally:
        os.environ.pop(keys.ENV, None)
        keys.forget()


# --------------------------------------------------------------------------------------------------
# The warehouse at rest
# --------------------------------------------------------------------------------------------------


def _loaded(demo, tmp_path, rows=None):
    resource = table_resource(demo, items=SEALED_ITEMS)
    rows = rows or [person(i) for i in range(1, 41)]
    load = ingest.ingest_file(demo.actor("officer-public-security"), resource.code, write_csv(tmp_path / "p.csv", rows))
    assert load.state == "committed", load.error
    return resource, rows, load


def _files(resource) -> list[str]:
    table = lake.open_table(resource.mount_target)
    return lake.data_files(table, table.current_snapshot())


def test_sensitive_items_are_sealed_in_the_warehouse_files(demo, tmp_path):
    resource, rows, _load = _loaded(demo, tmp_path)
    assert fieldcrypt.encrypted_items(resource.published.items.all()) == {"公民身份号码", "姓名"}
    [key] = DataKey.objects.filter(resource=resource)
    assert key.state == KeyState.ACTIVE and key.master == keys.current_fingerprint()
    raw = b"".join(open(f, "rb").read() for f in _files(resource))
    for row in rows[:10]:
        assert row[0].encode() not in raw and row[1].encode() not in raw  # neither the ID number nor the name
    con = duckdb.connect()
    stored = con.execute(f"SELECT * FROM read_parquet({_files(resource)!r})").fetchall()
    names = [d[0] for d in con.description]
    assert {"公民身份号码__bi", "姓名__bi", "性别", "出生日期"} <= set(names)
    first = dict(zip(names, stored[0]))
    assert first["公民身份号码"].startswith(f"sz1:{key.id}:") and len(first["公民身份号码__bi"]) == 32
    assert first["性别"] in ("1", "2")  # general items stay in clear
    # Tokens are bound to their cell: the same value sealed twice differs, the blind index does not.
    cipher = fieldcrypt.cipher_for(resource, resource.published.items.all())
    assert cipher.seal("姓名", "张1") != cipher.seal("姓名", "张1")
    assert cipher.index("姓名", "张1") == cipher.index("姓名", "张1") != cipher.index("公民身份号码", "张1")
    with pytest.raises(DecryptionError):
        cipher.open("姓名", first["公民身份号码"])  # a token moved to another item
    # The provider's own preview shows tokens: only the gateway opens them.
    sample = ingest.read_rows(demo.actor("officer-public-security"), resource.code, limit=3)["sample"]
    assert all(r["公民身份号码"].startswith("sz1:") for r in sample)


def _grant(demo, resource, **terms):
    code, key = system(demo)
    data = application_data(code, resource.code, items=[i["name"] for i in PEOPLE_ITEMS], **terms)
    application = services.apply(demo.actor("officer-civil-affairs"), data)
    for decider in ("officer-public-security", "reviewer"):  # until approved: provider, then office (重要)
        if application.state == "approved":
            break
        application = services.decide(demo.actor(decider), application.number, {"decision": "approve"})
    assert application.state == "approved"
    return key


def test_gateway_verifies_by_blind_index_and_opens_only_for_the_grant(demo, client, tmp_path):
    resource, rows, _load = _loaded(demo, tmp_path)
    url = resource.code.replace("/", "-")
    key = _grant(demo, resource, clear_items=["公民身份号码"])
    ok = verify(client, key, {"公民身份号码": rows[3][0], "姓名": rows[3][1]}, code=url).json()
    assert ok["match"] is True and ok["found"] is True
    wrong = verify(client, key, {"公民身份号码": rows[3][0], "姓名": "李四"}, code=url).json()
    assert wrong["found"] is True and wrong["match"] is False
    missing = verify(client, key, {"公民身份号码": person(999)[0], "姓名": "张999"}, code=url).json()
    assert missing["found"] is False
    # Records: the clear item opened, the masked one opened and then masked; an exact filter by blind index.
    page = records(client, key, {"eq.公民身份号码": rows[5][0]}, code=url).json()
    assert [r["公民身份号码"] for r in page["rows"]] == [rows[5][0]]
    assert page["rows"][0]["姓名"] == "张*"
    many = records(client, key, {"in.公民身份号码": f"{rows[1][0]},{rows[2][0]}"}, code=url).json()
    assert sorted(r["公民身份号码"] for r in many["rows"]) == sorted([rows[1][0], rows[2][0]])
    # Only exact filters apply to an encrypted item; sorting on it is refused, naming the parameter.
    for params, field in (({"prefix.公民身份号码": "1306"}, "prefix.公民身份号码"), ({"sort": "公民身份号码"}, "sort")):
        refused = records(client, key, params, code=url)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field
    # SQL over the table opens the values inside the gateway's DuckDB, then masks them.
    answer = call(client, key, "/api/v1/share/sql", {"sql": f'SELECT "公民身份号码", "姓名" FROM {resource.mount_target} '
                                                            f"WHERE \"公民身份号码\" = '{rows[7][0]}'"})
    assert answer.status_code == 200, answer.content
    assert answer.json()["rows"] == [[rows[7][0], "张*"]]


def test_a_grant_scoped_by_prefix_on_an_encrypted_item_still_applies(demo, client, tmp_path):
    rows = [person(i, name=f"王{i}") for i in range(1, 11)] + [person(i, name=f"赵{i}") for i in range(11, 21)]
    resource, rows, _load = _loaded(demo, tmp_path, rows)
    url = resource.code.replace("/", "-")
    key = _grant(demo, resource, row_filter=[{"item": "姓名", "op": "prefix", "value": "王"}])
    inside = verify(client, key, {"公民身份号码": rows[0][0], "姓名": rows[0][1]}, code=url).json()
    outside = verify(client, key, {"公民身份号码": rows[15][0], "姓名": rows[15][1]}, code=url).json()
    assert inside["found"] is True and outside["found"] is False
    page = records(client, key, {"limit": "100"}, code=url).json()
    assert len(page["rows"]) == 10


def test_a_tampered_warehouse_value_is_refused_and_audited(demo, client, tmp_path):
    from shuzheng.audit.models import AuditRecord

    resource, rows, _load = _loaded(demo, tmp_path)
    url = resource.code.replace("/", "-")
    key = _grant(demo, resource, clear_items=["公民身份号码"])
    # Someone with write access to the warehouse folder flips one byte of one sealed name.
    [path] = _files(resource)
    con = duckdb.connect()
    table = lake.open_table(resource.mount_target)
    ids = lake.field_ids(table)
    cols = [d[0] for d in con.execute(f"SELECT * FROM read_parquet('{path}') LIMIT 0").description]
    token = con.execute(f"SELECT \"姓名\" FROM read_parquet('{path}') LIMIT 1").fetchall()[0][0]
    flipped = token[:-4] + ("A" if token[-4] != "A" else "B") + token[-3:]
    select = ", ".join(f"CASE WHEN \"{c}\" = '{token}' THEN '{flipped}' ELSE \"{c}\" END AS \"{c}\"" if c == "姓名"
                       else f'"{c}"' for c in cols)
    field_ids = "{" + ", ".join(f"'{c}': {ids[c]}" for c in cols) + "}"
    con.execute(f"COPY (SELECT {select} FROM read_parquet('{path}')) TO '{path}.new' (FORMAT parquet, FIELD_IDS {field_ids})")
    os.replace(f"{path}.new", path)
    answer = records(client, key, {"limit": "100"}, code=url)
    assert answer.status_code == 503, answer.content
    assert "integrity" in answer.json()["detail"]
    refused = AuditRecord.objects.filter(action="share.refused").order_by("-seq").first()
    assert refused is not None and "503" in refused.summary and "integrity" in refused.summary


def test_rotation_re_encrypts_and_keeps_serving(demo, client, tmp_path):
    resource, rows, load = _loaded(demo, tmp_path)
    url = resource.code.replace("/", "-")
    key = _grant(demo, resource)
    before = verify(client, key, {"公民身份号码": rows[0][0], "姓名": rows[0][1]}, code=url).json()
    assert before["match"] is True and before["snapshot_id"] == load.snapshot_id
    [old] = DataKey.objects.filter(resource=resource)
    [result] = rotation.rotate(demo.cli(), resource.code)
    new = DataKey.objects.get(resource=resource, state=KeyState.ACTIVE)
    assert new.id == result["key"] != old.id
    # The old key is still needed: the table's history holds the snapshot written under it.
    assert DataKey.objects.get(pk=old.id).state == KeyState.RETIRING
    after = verify(client, key, {"公民身份号码": rows[0][0], "姓名": rows[0][1]}, code=url).json()
    assert after["match"] is True and after["snapshot_id"] == result["snapshot_id"] != load.snapshot_id
    con = duckdb.connect()
    tokens = [r[0] for r in con.execute(f"SELECT \"公民身份号码\" FROM read_parquet({_files(resource)!r})").fetchall()]
    assert len(tokens) == len(rows) and all(t.startswith(f"sz1:{new.id}:") for t in tokens)
    # Once the history no longer holds the old snapshot, the old key is destroyed.
    lake.expire(lake.open_table(resource.mount_target), 1)
    assert rotation.retire_unused(demo.cli(), resource) == [old.id]
    old.refresh_from_db()
    assert old.state == KeyState.RETIRED and old.wrapped is None
    assert Rotation.objects.get(resource=resource).state == Rotation.State.DONE


def test_an_interrupted_rotation_resumes_with_its_key(demo, client, tmp_path, monkeypatch):
    resource, rows, _load = _loaded(demo, tmp_path)
    monkeypatch.setenv("SHUZHENG_FAULT_ROTATION", "fail")
    with pytest.raises(RuntimeError):
        rotation.rotate(demo.cli(), resource.code)
    running = Rotation.objects.get(resource=resource)
    assert running.state == Rotation.State.RUNNING
    table = lake.open_table(resource.mount_target)
    assert fieldcrypt.kids_of(table.current_snapshot()) == [running.old_key_id]  # nothing committed
    monkeypatch.delenv("SHUZHENG_FAULT_ROTATION")
    [result] = rotation.rotate(demo.cli(), resource.code)
    assert result["key"] == running.new_key_id
    assert Rotation.objects.filter(resource=resource).count() == 1
    running.refresh_from_db()
    assert running.state == Rotation.State.DONE


@pytest.fixture
def keys_restored():
    """The session's key folder as it was: a master rotation inside a test is rolled back in the database (the
    data keys go back to the old wrapping), so the old master file must come back too."""
    folder = keys.keys_dir()
    saved = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    yield
    for p in folder.iterdir():
        if p.is_file() and p.name not in saved:
            p.unlink()
    for name, data in saved.items():
        (folder / name).write_bytes(data)
    keys.forget()
    fieldcrypt.forget()


def test_master_key_rotation_rewraps_every_data_key(demo, tmp_path, keys_restored):
    resource, rows, _load = _loaded(demo, tmp_path)
    before = keys.current_fingerprint()
    result = rotation.rotate_master(demo.cli())
    assert result["master"] != before and result["rewrapped"] >= 1 and result["removed"] == [before]
    assert not list(keys.keys_dir().glob("master-*.key"))
    assert set(DataKey.objects.exclude(wrapped=None).values_list("master", flat=True)) == {result["master"]}
    fieldcrypt.forget()
    cipher = fieldcrypt.cipher_for(resource, resource.published.items.all())
    con = duckdb.connect()
    token = con.execute(f"SELECT \"姓名\" FROM read_parquet({_files(resource)!r}) LIMIT 1").fetchall()[0][0]
    assert cipher.open("姓名", token).startswith("张")
