"""Encryption of sensitive items at rest (S2; GB/T 39786 confidentiality of important data at rest).

Items the classification policy marks (security.policy.encrypts: 重要 and 核心 personal string items) are
written to the warehouse as SM4-GCM tokens, `sz1:<key id>:<base64 nonce‖ciphertext‖tag>`, each bound (GCM
associated data) to its table and item, so a token moved to another cell fails to open. Beside each such
item the table carries `<item>__bi`, its blind index: HMAC-SM3 of the item name and the value under the
data key's index key, truncated to 128 bits. Exact-match filters and verification compare blind indexes and
never decrypt.

Each resource has data keys (security.models.DataKey), wrapped by the master key (security.keys). A token
names the key that sealed it, so values of old and new keys can sit side by side while a rotation runs; a
blind-index lookup tries every key a snapshot was written under (one while no rotation runs).

Who holds clear values: the loader (it receives them from the department and writes the tokens) and the
sharing gateway, for grants that show the item (masked or clear). Warehouse previews, derived loads, and any
DuckDB or Iceberg client reading the files see tokens.
"""

from __future__ import annotations

import base64
import hmac
import os
import threading
from dataclasses import dataclass

import pyarrow as pa

from shuzheng.core.crypto import DecryptionError, sm3_for_hmac, sm3_hex, sm4_gcm_open, sm4_gcm_seal
from shuzheng.security import keys

TOKEN = "sz1:"
INDEX_SUFFIX = "__bi"
KIDS_PROPERTY = "shuzheng.kids"  # snapshot summary: the data keys its files were written under


def index_column(item: str) -> str:
    return item + INDEX_SUFFIX


@dataclass(frozen=True)
class _Key:
    kid: int
    value_key: bytes  # SM4, 16 bytes
    index_mac: hmac.HMAC  # HMAC-SM3 keyed with the 32-byte index key, copied for each value


def purpose(kid: int, resource_id) -> str:
    return f"datakey:{kid}:{resource_id}"


def new_key(resource):
    """Creates and stores a fresh active data key for `resource` (the caller retires the previous one in the
    same transaction)."""
    from shuzheng.security.models import DataKey

    key = DataKey.objects.create(resource=resource, master=keys.current_fingerprint(), wrapped=b"")
    key.wrapped = keys.wrap(os.urandom(48), purpose(key.id, resource.id))
    key.save(update_fields=["wrapped"])
    return key


def _material(key) -> _Key:
    raw = keys.unwrap(key.wrapped, purpose(key.id, key.resource_id))
    return _Key(key.id, raw[:16], hmac.new(raw[16:48], digestmod=sm3_for_hmac))


class FieldCipher:
    """Seals, opens and indexes one warehouse table's encrypted items."""

    def __init__(self, resource_id, identifier: str, encrypted: frozenset[str]):
        self.resource_id = resource_id
        self.identifier = identifier
        self.encrypted = encrypted
        # DuckDB function names of this table's cipher: several tables' ciphers can share a connection (a
        # load's reference checks, a join in the gateway's SQL), and views call their functions lazily.
        self.tag = sm3_hex(identifier.encode())[:10]
        self._keys: dict[int, _Key] = {}
        self._active: _Key | None = None
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        """Reads the resource's usable keys again (after a rotation made a new one)."""
        from shuzheng.security.models import DataKey, KeyState

        found, active = {}, None
        for key in DataKey.objects.filter(resource_id=self.resource_id).exclude(state=KeyState.RETIRED):
            material = _material(key)
            found[key.id] = material
            if key.state == KeyState.ACTIVE:
                active = material
        with self._lock:
            self._keys, self._active = found, active

    def _key(self, kid: int) -> _Key:
        key = self._keys.get(kid)
        if key is None:
            self.reload()
            key = self._keys.get(kid)
            if key is None:
                raise DecryptionError(f"data key {kid} of {self.identifier} is not available (retired or unknown)")
        return key

    @property
    def active_kid(self) -> int:
        if self._active is None:
            self.reload()
            if self._active is None:
                raise DecryptionError(f"{self.identifier} has no active data key")
        return self._active.kid

    def _aad(self, item: str) -> bytes:
        return f"{self.identifier}\x1f{item}".encode()

    def seal(self, item: str, value: str | None, kid: int | None = None) -> str | None:
        if value is None:
            return None
        key = self._key(kid) if kid is not None else self._keys[self.active_kid]
        sealed = sm4_gcm_seal(key.value_key, value.encode(), self._aad(item))
        return f"{TOKEN}{key.kid}:{base64.b64encode(sealed).decode()}"

    def open(self, item: str, token: str | None) -> str | None:
        """The clear value of a token; DecryptionError when it was altered, moved or its key is wrong."""
        if token is None:
            return None
        try:
            head, kid, body = token.split(":", 2)
            if head + ":" != TOKEN:
                raise ValueError
            sealed = base64.b64decode(body, validate=True)
            key = self._key(int(kid))
        except (ValueError, TypeError) as exc:
            raise DecryptionError(f"{item}: not a token") from exc
        return sm4_gcm_open(key.value_key, sealed, self._aad(item)).decode()

    def index(self, item: str, value: str | None, kid: int | None = None) -> str | None:
        if value is None:
            return None
        key = self._key(kid) if kid is not None else self._keys[self.active_kid]
        mac = key.index_mac.copy()  # the key's padded inner and outer states, computed once
        mac.update(item.encode() + b"\x1f" + str(value).encode())
        return mac.digest()[:16].hex()

    def indexes(self, item: str, value, kids) -> list[str]:
        """The blind index of `value` under each of `kids` (the keys a snapshot was written under)."""
        return [self.index(item, value, kid) for kid in kids]

    # DuckDB scalar functions over Arrow arrays: a table's items are sealed or opened in one pass.
    def register(self, con) -> None:
        def seal(items: pa.Array, values: pa.Array) -> pa.Array:
            kid = self.active_kid
            return pa.array([self.seal(i, v, kid) for i, v in zip(items.to_pylist(), values.to_pylist())],
                            type=pa.string())

        def index(items: pa.Array, values: pa.Array) -> pa.Array:
            kid = self.active_kid
            return pa.array([self.index(i, v, kid) for i, v in zip(items.to_pylist(), values.to_pylist())],
                            type=pa.string())

        def open_(items: pa.Array, values: pa.Array) -> pa.Array:
            return pa.array([self.open(i, v) for i, v in zip(items.to_pylist(), values.to_pylist())],
                            type=pa.string())

        def open_or_clear(items: pa.Array, values: pa.Array) -> pa.Array:
            # A rotation's reading of a table whose item was classified for encryption after it was loaded.
            return pa.array([self.open(i, v) if v is not None and v.startswith(TOKEN) else v
                             for i, v in zip(items.to_pylist(), values.to_pylist())], type=pa.string())

        for kind, fn in (("seal", seal), ("index", index), ("open", open_), ("open_or_clear", open_or_clear)):
            name = self.function(kind)
            try:
                con.remove_function(name)
            except Exception:  # not registered on this connection yet
                pass
            con.create_function(name, fn, ["VARCHAR", "VARCHAR"], "VARCHAR", type="arrow",
                                null_handling="special", side_effects=kind == "seal")

    def function(self, kind: str) -> str:
        """The DuckDB name of this cipher's `kind` function (seal, index, open, open_or_clear)."""
        return f"sz_{kind}_{self.tag}"

    def sealed_select(self, names: list[str]) -> tuple[str, list[str]]:
        """(select list, column names written) sealing a relation's encrypted items and adding their blind
        indexes (after `register` on the connection)."""
        from shuzheng.core.sql import quote_ident, quote_literal

        seal, index = self.function("seal"), self.function("index")
        select = ", ".join(f"{seal}({quote_literal(n)}, {quote_ident(n)}) AS {quote_ident(n)}"
                           if n in self.encrypted else quote_ident(n) for n in names)
        sealed = [n for n in names if n in self.encrypted]
        select += "".join(f", {index}({quote_literal(n)}, {quote_ident(n)}) AS {quote_ident(index_column(n))}"
                          for n in sealed)
        return select, names + [index_column(n) for n in sealed]


def kids_of(snapshot) -> list[int]:
    """The data keys a snapshot's files were written under (from its summary)."""
    if snapshot is None or snapshot.summary is None:
        return []
    raw = snapshot.summary.get(KIDS_PROPERTY) or ""
    return [int(k) for k in raw.split(",") if k]


def kids_after(parent, kid: int, replace: bool) -> str:
    """The summary value for a new snapshot: its own key, plus the parent's when it keeps the parent's files."""
    kids = {kid} if replace else {kid, *kids_of(parent)}
    return ",".join(str(k) for k in sorted(kids))


def encrypted_items(items) -> frozenset[str]:
    from shuzheng.security.policy import encrypts

    return frozenset(i.name for i in items if encrypts(i))


_ciphers: dict[tuple, FieldCipher] = {}
_ciphers_lock = threading.Lock()


def ensure_key(actor, resource) -> None:
    """Gives `resource` its first data key, unless it has an active one (a loader about to write its first
    encrypted values); audited as `actor`."""
    from django.db import transaction

    from shuzheng.audit.services import record
    from shuzheng.security.models import DataKey, KeyState

    with transaction.atomic():
        if not DataKey.objects.select_for_update().filter(resource=resource, state=KeyState.ACTIVE).exists():
            key = new_key(resource)
            record(actor, "keys.create", key, summary={"resource": resource.code, "key": key.id})


def cipher_for(resource, items) -> FieldCipher | None:
    """The cipher of a resource's table, or None when none of `items` is encrypted."""
    encrypted = encrypted_items(items)
    if not encrypted:
        return None
    cache_key = (resource.id, resource.mount_target, encrypted)
    with _ciphers_lock:
        cipher = _ciphers.get(cache_key)
        if cipher is None:
            cipher = _ciphers[cache_key] = FieldCipher(resource.id, resource.mount_target, encrypted)
    return cipher


def forget() -> None:
    with _ciphers_lock:
        _ciphers.clear()
