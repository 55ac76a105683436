"""The data gateway: every call of an application system on shared data goes through `authorize` (the API
key, the live grant, its expiry, source addresses and quotas), then one of the calls below, which apply the
grant's items, row filter and masks; every call, refused ones included, is audited and metered (recorder).

Freshness: one indexed query per call reads the key's and the grant's current state, so revoking a key or a
grant, or narrowing a grant, takes effect on the next call. What a grant means (items, masks compiled to
functions, row filter compiled to SQL) is cached per grant and rebuilt when the grant row changes.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hmac
import ipaddress
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass

import orjson
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit.services import Entry
from shuzheng.catalog.models import DataType, MountKind, Resource
from shuzheng.core.crypto import DecryptionError, derive_key, hmac_sm3, sm3_hex
from shuzheng.core.errors import (AuthenticationFailed, Conflict, FieldError, Forbidden, NotFound, ServiceError,
                                  TooManyRequests, Unavailable, ValidationFailed)
from shuzheng.core.sql import quote_literal
from shuzheng.org.services import KEY_PREFIX
from shuzheng.security import fieldcrypt
from shuzheng.sharing import filters, masks, serving, sqlgate
from shuzheng.sharing.models import Export, ExportState, Grant
from shuzheng.sharing.recorder import Use, recorder
from shuzheng.warehouse import lake

PAGE_DEFAULT = 100
PAGE_MAX = 1000
SQL_ROWS_DEFAULT = 1000
SQL_ROWS_MAX = 10_000
SQL_TIMEOUT_S = 10.0
EXPORT_FORMATS = ("csv", "parquet", "xlsx")
EXPORT_LINK_HOURS = 24


# --------------------------------------------------------------------------------------------------
# Policy: what a grant means, compiled once
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    grant_id: uuid.UUID
    version_key: tuple
    system: str
    consumer: str
    provider: str
    resource: str
    table: str  # the warehouse table
    purpose: str
    items: tuple[str, ...]  # granted, in the resource's order
    types: dict  # every item of the resource -> data type
    keys: tuple[str, ...]  # the resource's key items
    store_items: tuple  # every item, for the serving store
    specs: dict  # granted item -> mask spec
    mask_fns: dict  # granted item -> masked value
    encrypted: frozenset  # items stored as SM4 tokens beside a blind index (security.fieldcrypt)
    cipher: object  # the table's FieldCipher, or None
    clear: frozenset  # granted items served in clear: the only ones that may be filtered or sorted on
    verify_items: frozenset
    row_filter: tuple
    row_sqlite: tuple  # (where, params)
    expires_at: dt.datetime
    calls_per_day: int | None
    rows_per_day: int | None
    networks: tuple
    methods: tuple

    def use(self, rows: int = 0, size: int = 0, error: bool = False) -> Use:
        return Use(self.grant_id, self.system, self.consumer, self.provider, self.resource, rows, size, error)


_policies: dict[uuid.UUID, Policy] = {}
_policies_lock = threading.Lock()


def _policy(grant_id, version_key: tuple) -> Policy:
    cached = _policies.get(grant_id)
    if cached is not None and cached.version_key == version_key:
        return cached
    grant = Grant.objects.select_related("system", "consumer", "provider", "resource__published",
                                         "application").get(pk=grant_id)
    resource = grant.resource
    all_items = list(resource.published.items.order_by("position"))
    types = {i.name: i.data_type for i in all_items}
    granted = tuple(i.name for i in all_items if i.name in grant.items)
    domain = grant.system.code
    specs = {n: grant.masks.get(n, {"kind": "null"}) for n in granted}
    conditions = tuple(filters.parse(grant.row_filter, types))
    store_items = serving.items_of(resource.published)
    encrypted = frozenset(i.name for i in store_items if i.encrypted)
    policy = Policy(
        grant_id=grant.id, version_key=version_key, system=grant.system.code, consumer=grant.consumer.code,
        provider=grant.provider.code, resource=resource.code, table=resource.mount_target,
        purpose=grant.application.purpose[:200], items=granted, types=types,
        keys=tuple(i.name for i in all_items if i.is_key),
        store_items=store_items, specs=specs, encrypted=encrypted,
        cipher=fieldcrypt.cipher_for(resource, all_items) if encrypted else None,
        # Hash masks are keyed per consumer system (the key id is the system's code; masks.hash_key).
        mask_fns={n: masks.compile_py(specs[n], types[n], key_id=domain) for n in granted},
        clear=frozenset(n for n in granted if specs[n].get("kind") == "clear"),
        verify_items=frozenset(grant.verify_items) & frozenset(granted), row_filter=conditions,
        row_sqlite=filters.to_sqlite([c for c in conditions if c.item not in encrypted]), expires_at=grant.expires_at,
        calls_per_day=grant.calls_per_day, rows_per_day=grant.rows_per_day,
        networks=tuple(ipaddress.ip_network(n) for n in grant.allowed_ips), methods=tuple(grant.methods))
    with _policies_lock:
        if len(_policies) > 5000:
            _policies.clear()
        _policies[grant_id] = policy
    return policy


# --------------------------------------------------------------------------------------------------
# Authorization
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who is calling: what the audit trail names."""

    system: str
    org: str
    ip: str

    @property
    def name(self) -> str:
        return f"system:{self.system}" if self.system else "anonymous"


_STATE_SQL = """
SELECT k.revoked_at, k.expires_at, s.is_active, s.code, o.code, g.id, g.updated_at, v.id, r.status,
       (SELECT t.current_snapshot_id FROM warehouse_table t WHERE t.resource_id = r.id)
FROM org_apikey k
JOIN org_applicationsystem s ON s.id = k.system_id
JOIN org_organization o ON o.id = s.organization_id
LEFT JOIN catalog_resource r ON r.code = %s
LEFT JOIN catalog_resourceversion v ON v.id = r.published_id
LEFT JOIN sharing_grant g ON g.system_id = s.id AND g.resource_id = r.id AND g.revoked_at IS NULL
WHERE k.digest = %s
"""


@functools.lru_cache(maxsize=64)
def _qmark(sql: str) -> str:
    return sql.replace("%s", "?")


def fetch_one(sql: str, params: list):
    """One row of a hot-path query, on the DB-API connection itself: Django's cursor wrapper (query
    rewriting, error wrapping) costs more than an indexed SQLite query (about 150 µs against 100 µs)."""
    connection.ensure_connection()
    raw = connection.connection
    if connection.vendor == "sqlite":
        return raw.execute(_qmark(sql), params).fetchone()
    with raw.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def _aware(value):
    """A datetime from a raw query: SQLite hands back text or naive values."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, dt.timezone.utc)
    return value


def _grant_id(value) -> uuid.UUID | None:
    if value is None:
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def authorize(key: str, ip: str, resource_code: str, call: str, method: str = "interface", need_grant: bool = True):
    """(caller, policy, snapshot id) for a call on one resource, or the refusal (audited) as a ServiceError.
    With need_grant False only the key is checked: (caller, None, None)."""
    caller = Caller("", "", ip)
    try:
        if not key.startswith(KEY_PREFIX) or len(key) > 100:
            raise AuthenticationFailed(_("The API key is not valid."))
        row = fetch_one(_STATE_SQL, [resource_code, sm3_hex(key.encode())])
        if row is None:
            raise AuthenticationFailed(_("The API key is not valid."))
        revoked, expires, active, system, org, grant_id, updated, version_id, status, snapshot_id = row
        caller = Caller(system, org, ip)
        now = timezone.now()
        if revoked is not None:
            raise AuthenticationFailed(_("The API key was revoked."))
        if _aware(expires) <= now:
            raise AuthenticationFailed(_("The API key has expired."))
        if not active:
            raise AuthenticationFailed(_("The application system is deactivated."))
        grant_id = _grant_id(grant_id)
        if not need_grant:
            return caller, None, None
        if grant_id is None:
            raise Forbidden(_("Your system has no live grant for resource %(code)s.") % {"code": resource_code})
        if status != "published" or version_id is None:  # deprecated since the grant: nothing is shared
            raise Forbidden(_("Resource %(code)s is no longer published.") % {"code": resource_code})
        policy = _policy(grant_id, (str(updated), version_id))
        check(policy, ip, method)
        return caller, policy, snapshot_id
    except ServiceError as exc:
        refuse(caller, call, resource_code, exc)
        raise


def check(policy: Policy, ip: str, method: str) -> None:
    """The grant's own conditions, in the order a consumer would fix them."""
    if policy.expires_at <= timezone.now():
        raise Forbidden(_("Your grant for %(code)s expired on %(at)s.") % {
            "code": policy.resource, "at": timezone.localtime(policy.expires_at).date().isoformat()})
    if policy.networks:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            address = None
        if address is None or not any(address in n for n in policy.networks):
            raise Forbidden(_("Calls from %(ip)s are not allowed by your grant for %(code)s.")
                            % {"ip": ip or "?", "code": policy.resource})
    if method not in policy.methods:
        raise Forbidden(_("Your grant for %(code)s is for %(methods)s, not %(method)s.")
                        % {"code": policy.resource, "methods": ", ".join(policy.methods), "method": method})
    calls, rows = recorder.today(policy.grant_id)
    if policy.calls_per_day is not None and calls >= policy.calls_per_day:
        raise TooManyRequests(_("The daily quota of %(n)s calls on %(code)s is used up; it resets at midnight.")
                              % {"n": policy.calls_per_day, "code": policy.resource})
    if policy.rows_per_day is not None and rows >= policy.rows_per_day:
        raise TooManyRequests(_("The daily quota of %(n)s rows from %(code)s is used up; it resets at midnight.")
                              % {"n": policy.rows_per_day, "code": policy.resource})


def rows_left(policy: Policy) -> int | None:
    if policy.rows_per_day is None:
        return None
    return max(0, policy.rows_per_day - recorder.today(policy.grant_id)[1])


def refuse(caller: Caller, call: str, resource: str, exc: ServiceError, policy: Policy | None = None,
           details: dict | None = None) -> None:
    """Audits (and meters, when a grant is known) a refused call."""
    summary = {"call": call, "resource": resource, "outcome": "refused", "status": exc.status,
               "reason": str(exc.detail)[:300]}
    if details:
        summary.update(details)
    recorder.record(Entry(caller.name, caller.org, caller.ip, "share.refused", "sharing.grant",
                          str(policy.grant_id) if policy else "", summary),
                    policy.use(error=True) if policy else None)


def _done(caller: Caller, policy: Policy, call: str, summary: dict, rows: int, size: int) -> None:
    summary.update({"call": call, "resource": policy.resource, "system": policy.system, "purpose": policy.purpose,
                    "outcome": "ok", "rows": rows})
    recorder.record(Entry(caller.name, caller.org, caller.ip, f"share.{call}", "sharing.grant",
                          str(policy.grant_id), summary), policy.use(rows, size))


def _guard(caller: Caller, policy: Policy, call: str, details: dict, fn):
    """Runs a call's own validation and work; a refusal there is audited like any other."""
    try:
        try:
            return fn()
        except (DecryptionError, sqlite3.OperationalError) as exc:
            # Altered files or a wrong key (sz_open raising inside SQLite arrives as OperationalError):
            # refused and audited, never served as garbage.
            if isinstance(exc, sqlite3.OperationalError) and "user-defined function" not in str(exc):
                raise
            raise Unavailable(_("Stored data of %(code)s failed its integrity check; the platform's security "
                                "administrator has been told.") % {"code": policy.resource}) from exc
    except ServiceError as exc:
        refuse(caller, call, policy.resource, exc, policy, details)
        raise


# --------------------------------------------------------------------------------------------------
# Verification (核验)
# --------------------------------------------------------------------------------------------------


def _store(policy: Policy, snapshot_id):
    path, served = serving.store_for(policy.table, snapshot_id, policy.store_items)
    if path is None:
        raise Conflict(_("No data has been loaded into %(code)s yet.") % {"code": policy.resource})
    return serving.connection(path), served, path


@functools.lru_cache(maxsize=4096)
def _lookup_sql(keys: tuple[tuple[str, int], ...], names: tuple[str, ...], where: str) -> str:
    """The serving store's point lookup: columns `names` of the record whose key columns hold these values
    (a key column with several values: one blind index per data key), within `where`."""
    match = " AND ".join(f"{filters.quote_ident(k)} = ?" if n == 1 else
                         f"{filters.quote_ident(k)} IN ({', '.join('?' * n)})" for k, n in keys)
    return (f"SELECT {', '.join(filters.quote_ident(n) for n in names)} FROM data WHERE {match}"
            + (f" AND {where}" if where else "") + " LIMIT 1")


def _find(con, path, encrypted: frozenset, cipher, keys: tuple[str, ...], values: dict, where: str,
          params: list) -> list[str] | None:
    """The items of `values` that differ from the stored record with `values`' key items, or None when
    there is no such record. Encrypted items are compared by blind index, never decrypted."""
    kids = serving.kids(path) if encrypted else ()
    names = tuple(sorted(values))
    # Each sealed item's blind indexes once (an HMAC-SM3 a live key): a key item is usually compared too.
    indexes = {n: cipher.indexes(n, values[n], kids) for n in encrypted.intersection(names)}  # keys ⊆ names
    key_cols, args = [], []
    for k in keys:
        if k in encrypted:
            key_cols.append((fieldcrypt.index_column(k), len(indexes[k])))
            args += indexes[k]
        else:
            key_cols.append((k, 1))
            args.append(values[k])
    selected = tuple(fieldcrypt.index_column(n) if n in encrypted else n for n in names)
    row = con.execute(_lookup_sql(tuple(key_cols), selected, where), args + params).fetchone()
    if row is None:
        return None
    return [n for n, v in zip(names, row)
            if (v not in indexes[n] if n in encrypted else v != values[n])]


def verify(key: str, ip: str, code: str, body) -> dict:
    """Does a record with these values exist within the grant? Which granted items differ, where the grant
    allows saying so. Discloses no value."""
    caller, policy, snapshot_id = authorize(key, ip, code, "verify")
    candidates = body.get("candidates") if isinstance(body, dict) else None
    names = sorted(candidates) if isinstance(candidates, dict) else []

    def run():
        if not isinstance(candidates, dict) or not candidates or len(candidates) > len(policy.types):
            raise ValidationFailed.of("candidates", _("An object of item names and values to check."))
        errors, typed = [], {}
        for name, value in candidates.items():
            if name not in policy.items:
                errors.append(FieldError(f"candidates.{name}", _("Not an item your grant covers.")))
                continue
            try:
                typed[name] = filters.store_value(filters.typed(value, policy.types[name], f"candidates.{name}"),
                                      policy.types[name])
            except filters.FilterError as exc:
                errors.append(exc.as_field_error())
        missing = [k for k in policy.keys if k not in candidates]
        if missing:
            errors.append(FieldError("candidates", _("Verification needs the key items: %(items)s.")
                                     % {"items": ", ".join(missing)}))
        if errors:
            raise ValidationFailed.listing(errors)
        con, served, path = _store(policy, snapshot_id)
        where, params = _where(policy, [], path, con)
        differs = _find(con, path, policy.encrypted, policy.cipher, policy.keys, typed, where, params)
        if differs is None:
            differs = [k for k in policy.keys if k in policy.verify_items]
            return {"match": False, "found": False, "differs": differs, "snapshot_id": served}
        return {"match": not differs, "found": True,
                "differs": [n for n in differs if n in policy.verify_items], "snapshot_id": served}

    result = _guard(caller, policy, "verify", {"items": names}, run)
    _done(caller, policy, "verify", {"items": names, "match": result["match"]}, 0, 0)
    return result


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------

FILTER_OPS = {"eq": "eq", "in": "in", "prefix": "prefix", "gte": "range", "lte": "range"}
_CURSOR_KEY = None


def _cursor_key() -> bytes:
    global _CURSOR_KEY
    if _CURSOR_KEY is None:
        _CURSOR_KEY = derive_key("gateway-cursor")
    return _CURSOR_KEY


def _sign(payload: bytes) -> str:
    return hmac_sm3(_cursor_key(), payload).hex()[:32]


def _encode_cursor(bound: str, snapshot_id, values: list) -> str:
    payload = orjson.dumps([bound, snapshot_id, values])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sign(payload)


def _decode_cursor(text: str, bound: str) -> tuple[int, list]:
    """(snapshot the paging started on, sort values of the last row sent) from a cursor of this query."""
    try:
        body, tag = text.rsplit(".", 1)
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not hmac.compare_digest(tag, _sign(payload)):
            raise ValueError
        stamp, snapshot_id, values = orjson.loads(payload)
        if stamp != bound or not isinstance(values, list) or not isinstance(snapshot_id, int):
            raise ValueError
        return snapshot_id, values
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValidationFailed.of("cursor", _("Not a cursor this query returned; start again without one."))


def _records_query(policy: Policy, params: dict) -> tuple[list[str], list, list[tuple[str, bool]], int]:
    """(items to return, conditions, sort, limit) from the query string; every item a filter or sort names
    must be granted and clear (a filter on a hidden or masked item would reveal it)."""
    errors = []
    wanted = params.get("items")
    if wanted:
        items = [n for n in wanted.split(",") if n]
        bad = [n for n in items if n not in policy.items]
        if bad:
            errors.append(FieldError("items", _("Not items your grant covers: %(items)s") % {"items": ", ".join(bad[:5])}))
    else:
        items = list(policy.items)
    conditions, ranges = [], {}
    sort = []
    limit = PAGE_DEFAULT
    for name, value in params.items():
        if name in ("items", "cursor"):
            continue
        if name == "limit":
            if not value.isdigit() or not 1 <= int(value) <= PAGE_MAX:
                errors.append(FieldError("limit", _("1 to %(n)s rows a page.") % {"n": PAGE_MAX}))
            else:
                limit = int(value)
            continue
        if name == "sort":
            for part in value.split(","):
                item = part.lstrip("-")
                if not _filterable(policy, item, "sort", errors):
                    continue
                if item in policy.encrypted:
                    errors.append(FieldError("sort", _("%(item)s is encrypted at rest and cannot be sorted on.")
                                             % {"item": item}))
                    continue
                sort.append((item, part.startswith("-")))
            continue
        op, _dot, item = name.partition(".")
        if op not in FILTER_OPS or not item:
            errors.append(FieldError(name, _("Unknown parameter. Filters are eq.ITEM, in.ITEM, prefix.ITEM, "
                                             "gte.ITEM and lte.ITEM.")))
            continue
        if not _filterable(policy, item, name, errors):
            continue
        if item in policy.encrypted and FILTER_OPS[op] not in ("eq", "in"):
            errors.append(FieldError(name, _("%(item)s is encrypted at rest: only exact filters (eq., in.) apply "
                                             "to it.") % {"item": item}))
            continue
        if FILTER_OPS[op] == "range":
            ranges.setdefault(item, [None, None])[0 if op == "gte" else 1] = value
            continue
        try:
            conditions.append(filters.condition(item, op, value.split(",") if op == "in" else value,
                                                policy.types[item], name))
        except filters.FilterError as exc:
            errors.append(FieldError(name, exc.message))  # the query parameter at fault
    for item, pair in ranges.items():
        try:
            conditions.append(filters.condition(item, "range", pair, policy.types[item], item))
        except filters.FilterError as exc:
            errors.append(FieldError(f"{'gte' if pair[0] is not None else 'lte'}.{item}", exc.message))
    if errors:
        raise ValidationFailed.listing(errors)
    return items, conditions, sort, limit


def _filterable(policy: Policy, item: str, field: str, errors: list) -> bool:
    if item not in policy.items:
        errors.append(FieldError(field, _("%(item)s is not an item your grant covers.") % {"item": item}))
        return False
    if item not in policy.clear:
        errors.append(FieldError(field, _("%(item)s is masked in your grant; filters and sorts apply to clear "
                                          "items only.") % {"item": item}))
        return False
    return True


_NULL_FIRST = {DataType.INTEGER: "-9.0e18", DataType.DECIMAL: "-9.0e18", DataType.BOOLEAN: "-1"}


def _sort_expr(policy: Policy, item: str) -> str:
    """The same expression orders the page and compares the cursor: NULLs first, ties broken by rowid."""
    col = filters.quote_ident(item)
    if policy.types[item] == DataType.DECIMAL:
        col = f"CAST({col} AS REAL)"
    return f"ifnull({col}, {_NULL_FIRST.get(policy.types[item], chr(39) * 2)})"


def records(key: str, ip: str, code: str, params: dict) -> dict:
    caller, policy, snapshot_id = authorize(key, ip, code, "records")
    details = {"filters": {k: _audited_filter(policy, k, v) for k, v in params.items() if k != "cursor"}}

    def run():
        items, conditions, sort, limit = _records_query(policy, params)
        left = rows_left(policy)
        if left is not None:
            limit = min(limit, left)
        exprs = [(_sort_expr(policy, item), desc) for item, desc in sort] + [("rowid", False)]
        bound = sm3_hex(orjson.dumps([str(policy.grant_id), sorted((k, v) for k, v in params.items() if k != "cursor")]))[:16]
        if params.get("cursor"):
            # Every page of one paging comes from the snapshot its first page came from.
            served, values = _decode_cursor(params["cursor"], bound)
            path = serving.path_for(policy.table, served, policy.store_items)
            if len(values) != len(exprs):
                raise ValidationFailed.of("cursor", _("Not a cursor this query returned; start again without one."))
            if not path.exists():
                raise Conflict(_("The data has changed since this paging began; start again without a cursor."),
                               [FieldError("cursor", _("Its snapshot is no longer served."))])
            con = serving.connection(path)
            where, args = _where(policy, conditions, path, con)
            clauses = [where] if where else []
            # Keyset: rows after the cursor in the page order, one OR branch per sort position.
            branches = []
            for i, (expr, desc) in enumerate(exprs):
                eqs = [f"{e} = ?" for e, _d in exprs[:i]]
                branches.append("(" + " AND ".join(eqs + [f"{expr} {'<' if desc else '>'} ?"]) + ")")
                args = args + values[:i] + [values[i]]
            clauses.append("(" + " OR ".join(branches) + ")")
        else:
            con, served, path = _store(policy, snapshot_id)
            where, args = _where(policy, conditions, path, con)
            clauses = [where] if where else []
        order = ", ".join(f"{e} {'DESC' if d else 'ASC'}" for e, d in exprs)
        sql = (f"SELECT {', '.join(e for e, _d in exprs)}, {', '.join(filters.quote_ident(n) for n in items)} "
               f"FROM data {'WHERE ' + ' AND '.join(clauses) if clauses else ''} ORDER BY {order} LIMIT {limit + 1}")
        fetched = con.execute(sql, args).fetchall() if limit else []
        width = len(exprs)
        page = fetched[:limit]
        rows = []
        for row in page:
            rows.append({n: _out(policy, n, v) for n, v in zip(items, row[width:])})
        next_cursor = (_encode_cursor(bound, served, list(page[-1][:width])) if len(fetched) > limit and page
                       else None)
        return {"resource": policy.resource, "snapshot_id": served, "items": items, "rows": rows,
                "next_cursor": next_cursor}

    result = _guard(caller, policy, "records", details, run)
    _done(caller, policy, "records", {**details, "items": result["items"]}, len(result["rows"]), 0)
    return result


def _audited_filter(policy: Policy, name: str, value: str) -> str:
    """A filter as the audit trail keeps it: values of sealed items as their blind-index tags (`bi:` and 12
    hex digits: one value, one tag, so lookups can still be counted), never in clear."""
    item = name.partition(".")[2]
    if item in policy.encrypted:
        return ",".join("bi:" + policy.cipher.index(item, v)[:12] for v in value.split(",")[:50])
    return value[:100]


def _out(policy: Policy, item: str, value):
    """A stored value as the consumer sees it: typed back (opened, if encrypted), then masked."""
    if item in policy.encrypted:
        value = policy.cipher.open(item, value)
    elif value is not None and policy.types[item] == DataType.BOOLEAN:
        value = bool(value)
    return policy.mask_fns[item](value)


def _where(policy: Policy, conditions: list, path, con) -> tuple[str, list]:
    """WHERE text and parameters for a serving store: the grant's row scope and `conditions`. Exact
    conditions on encrypted items compare blind indexes under the keys the store was written under; the
    row scope's prefix and range conditions on them open the values in SQLite (consumers' filters on
    encrypted items are exact only, see _records_query, so a call cannot make the store decrypt a table)."""
    everything = [*policy.row_filter, *conditions]
    sealed = [c for c in everything if c.item in policy.encrypted]
    if not conditions and not sealed:
        return policy.row_sqlite
    exact = [c for c in sealed if c.op in ("eq", "in")]
    where, params = filters.to_sqlite([c for c in everything if c not in exact and c.item not in policy.encrypted])
    parts = [where] if where else []
    opened = [c for c in sealed if c not in exact]
    if opened:
        con.create_function("sz_open", 2, policy.cipher.open, deterministic=True)
        text, args = filters.to_sqlite(opened, column=lambda n: f"sz_open({quote_literal(n)}, {filters.quote_ident(n)})")
        parts.append(text)
        params = params + args
    kids = serving.kids(path)
    for c in exact:
        values = [c.value] if c.op == "eq" else list(c.value)
        hashes = [h for v in values for h in policy.cipher.indexes(c.item, filters.store_value(v, c.data_type), kids)]
        parts.append(f"{filters.quote_ident(fieldcrypt.index_column(c.item))} IN ({', '.join('?' * len(hashes))})")
        params = params + hashes
    return " AND ".join(parts), params


# --------------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------------

_files_cache: dict[tuple[str, int], list[str]] = {}


def sql(key: str, ip: str, body) -> dict:
    """One SELECT over the caller's granted resources, rewritten so each table is its grant's view."""
    query = body.get("sql") if isinstance(body, dict) else None
    limit = body.get("limit", SQL_ROWS_DEFAULT) if isinstance(body, dict) else SQL_ROWS_DEFAULT
    caller = authorize(key, ip, "", "sql", need_grant=False)[0]
    try:
        if not isinstance(query, str) or not query.strip():
            raise ValidationFailed.of("sql", _("One SELECT statement."))
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= SQL_ROWS_MAX:
            raise ValidationFailed.of("limit", _("1 to %(n)s rows.") % {"n": SQL_ROWS_MAX})
    except ServiceError as exc:
        refuse(caller, "sql", "", exc)
        raise
    scopes: dict[str, tuple] = {}
    refused: list[str] = []

    def resolve(name: str):
        resource = Resource.objects.filter(mount_kind=MountKind.TABLE, mount_target=name.lower()).first()
        if resource is None:
            return None
        try:
            scopes[name] = authorize(key, ip, resource.code, "sql")
        except Forbidden:
            refused.append(name)  # audited by authorize
            return None
        return scopes[name]

    def refuse_all(error: ServiceError) -> None:
        if refused:
            return
        if not scopes:
            refuse(caller, "sql", "", error, None, {"sql": query[:500]})
        for who, policy, _snap in scopes.values():
            refuse(who, "sql", policy.resource, error, policy, {"sql": query[:500]})

    con = lake.duck()
    masks.register(con)  # hash masks, keyed by each system's code
    try:
        started = time.perf_counter()
        tables = {}
        try:
            rewritten = sqlgate.rewrite(query, lambda name: _scope(con, name, resolve, tables))
            if not rewritten.tables:
                raise sqlgate.SqlRefused(_("Name at least one of your granted tables."))
        except sqlgate.SqlRefused as exc:
            error = ValidationFailed.of("sql", exc.message)
            refuse_all(error)
            raise error
        rewrite_ms = (time.perf_counter() - started) * 1000
        sqlgate.sandbox(con, [str(lake.root())])
        try:
            columns, rows, truncated = sqlgate.run(con, rewritten.sql, max_rows=limit, timeout_s=SQL_TIMEOUT_S)
        except sqlgate.SqlRefused as exc:
            error = ValidationFailed.of("sql", exc.message)
            refuse_all(error)
            raise error
    finally:
        con.close()
    for name, (who, policy, _snap) in scopes.items():
        _done(who, policy, "sql", {"sql": query[:500], "items": rewritten.columns.get(name, [])}, len(rows), 0)
    return {"columns": columns, "rows": [list(r) for r in rows], "truncated": truncated,
            "rewrite_ms": round(rewrite_ms, 3)}


def _scope(con, name: str, resolve, tables: dict):
    found = resolve(name)
    if found is None:
        return None
    _caller, policy, snapshot_id = found
    view = f"v_{len(tables)}"
    tables[name] = view
    _create_view(con, view, policy, snapshot_id)
    columns = {n: masks.sql(policy.specs[n], filters.quote_ident(n), policy.types[n], policy.system)
               for n in policy.items}
    return sqlgate.TableScope(name=name, source_sql=filters.quote_ident(view), columns=columns,
                              row_filter=filters.to_duckdb(list(policy.row_filter)))


def _create_view(con, view: str, policy: Policy, snapshot_id) -> None:
    table = lake.open_table(policy.table)
    snapshot = lake.snapshot_for(table, snapshot_id) if table is not None and snapshot_id else None
    lake.view(con, view, table, policy.store_items, snapshot, cipher=policy.cipher)


# --------------------------------------------------------------------------------------------------
# Bulk export (库表/文件)
# --------------------------------------------------------------------------------------------------


def request_export(key: str, ip: str, code: str, body) -> Export:
    fmt = body.get("format") if isinstance(body, dict) else None
    method = "file" if fmt in ("csv", "xlsx") else "table"
    caller, policy, snapshot_id = authorize(key, ip, code, "export", method)

    def run():
        if fmt not in EXPORT_FORMATS:
            raise ValidationFailed.of("format", _("One of: %(f)s.") % {"f": ", ".join(EXPORT_FORMATS)})
        if snapshot_id is None:
            raise Conflict(_("No data has been loaded into %(code)s yet.") % {"code": policy.resource})
        with transaction.atomic():
            export = Export.objects.create(grant_id=policy.grant_id, format=fmt, seed=secrets.token_hex(16),
                                           snapshot_id=snapshot_id, requested_by=caller.name)
            transaction.on_commit(lambda: _queue_export(export.id))
        return export

    export = _guard(caller, policy, "export", {"format": fmt}, run)
    _done(caller, policy, "export_request", {"format": fmt, "export": str(export.id), "snapshot_id": snapshot_id},
          0, 0)
    return export


def _queue_export(export_id) -> None:
    from shuzheng.sharing.tasks import run_export

    run_export(str(export_id))


def export_path(export: Export):
    return lake.root().parent / "exports" / f"{export.id}.{export.format}"


def export_sql(con, export: Export) -> str:
    """The masked, row-filtered SELECT of an export's grant over its snapshot."""
    grant = export.grant
    policy = _policy(grant.id, (str(grant.updated_at), grant.resource.published_id))
    _create_view(con, "src", policy, export.snapshot_id)
    masks.register(con)
    cols = ", ".join(f"{masks.sql(policy.specs[n], filters.quote_ident(n), policy.types[n], policy.system)} AS "
                     f"{filters.quote_ident(n)}" for n in policy.items)
    where = filters.to_duckdb(list(policy.row_filter))
    return f"SELECT {cols} FROM src" + (f" WHERE {where}" if where else "")


def write(export_id) -> Export:
    """Runs one queued export (the job)."""
    from shuzheng.sharing import exports as writer

    export = Export.objects.select_related("grant__system", "grant__resource").get(pk=export_id)
    if export.state != ExportState.QUEUED:
        return export
    Export.objects.filter(pk=export.pk).update(state=ExportState.RUNNING)
    path = export_path(export)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = lake.duck()
    try:
        select = export_sql(con, export)
        written = writer.write_export(con, select, export.format, path, bytes.fromhex(export.seed), {
            "shuzheng.export": str(export.id), "shuzheng.recipient": export.grant.system.code,
            "shuzheng.resource": export.grant.resource.code, "shuzheng.snapshot": str(export.snapshot_id)})
    except Exception as exc:
        Export.objects.filter(pk=export.pk).update(state=ExportState.FAILED, error=str(exc)[:2000],
                                                   finished_at=timezone.now())
        raise
    finally:
        con.close()
    now = timezone.now()
    Export.objects.filter(pk=export.pk).update(
        state=ExportState.READY, rows=written.rows, bytes=written.bytes, sha256=written.sha256, finished_at=now,
        expires_at=now + dt.timedelta(hours=EXPORT_LINK_HOURS))
    export.refresh_from_db()
    return export


def export_status(key: str, ip: str, export_id) -> Export:
    """An export of the calling system's grant (404 for anyone else's)."""
    try:
        export = Export.objects.select_related("grant__resource", "grant__system").filter(pk=uuid.UUID(str(export_id))).first()
    except ValueError:
        export = None
    if export is None:
        authorize(key, ip, "", "export_status", need_grant=False)  # a bad key is still a 401
        raise NotFound(_("No such export."))
    _caller, policy, _snap = authorize(key, ip, export.grant.resource.code, "export_status",
                                      "file" if export.format != "parquet" else "table")
    if export.grant_id != policy.grant_id:
        raise NotFound(_("No such export."))
    return export


def download_token(export: Export) -> str:
    from django.core import signing

    return signing.dumps({"e": str(export.id)}, salt="shuzheng.export")


def open_download(token: str, ip: str) -> tuple[Export, object]:
    """The export file a link points to; the link is the credential and expires with the export."""
    from django.core import signing

    try:
        data = signing.loads(token, salt="shuzheng.export", max_age=EXPORT_LINK_HOURS * 3600)
        export = Export.objects.select_related("grant__system", "grant__resource", "grant__consumer",
                                               "grant__provider").get(pk=data["e"], state=ExportState.READY)
    except (signing.BadSignature, Export.DoesNotExist, KeyError, ValueError, TypeError):
        raise NotFound(_("This download link is not valid or has expired."))
    grant = export.grant
    if grant.revoked_at is not None or export.expires_at is None or export.expires_at <= timezone.now():
        raise NotFound(_("This download link is not valid or has expired."))
    caller = Caller(grant.system.code, grant.consumer.code, ip)
    recorder.record(Entry(caller.name, caller.org, ip, "share.export_download", "sharing.export", str(export.id),
                          {"resource": grant.resource.code, "rows": export.rows, "bytes": export.bytes,
                           "format": export.format}),
                    Use(grant.id, grant.system.code, grant.consumer.code, grant.provider.code, grant.resource.code,
                        export.rows or 0, export.bytes or 0))
    return export, open(export_path(export), "rb")


def export_dict(export: Export) -> dict:
    data = {"id": str(export.id), "state": export.state, "format": export.format, "snapshot_id": export.snapshot_id,
            "rows": export.rows, "bytes": export.bytes, "sha256": export.sha256 or None,
            "requested_at": export.created_at.isoformat(), "error": export.error or None,
            "expires_at": export.expires_at.isoformat() if export.expires_at else None}
    if export.state == ExportState.READY:
        data["download"] = f"/api/v1/share/exports/download/{download_token(export)}"
    return data


def identify_leak(path, resource_code: str) -> dict:
    """Which recipient an export file found outside came from (the watermark), over the resource's exports."""
    from shuzheng.sharing import exports as writer

    candidates = {str(e.id): e for e in Export.objects.filter(grant__resource__code=resource_code,
                                                             state=ExportState.READY).select_related("grant__system")}
    found = writer.identify(path, [(i, bytes.fromhex(e.seed)) for i, e in candidates.items()])
    match = candidates.get(found.export_id) if found.export_id else None
    return {"export": found.export_id, "system": match.grant.system.code if match else None,
            "consumer": match.grant.consumer_id and match.grant.consumer.name if match else None,
            "score": round(found.score, 4), "rows": found.rows}



_bare: dict[str, tuple] = {}


def bare_lookup(code: str, body: dict) -> dict:
    """The verification lookup with no policy at all, for bench/gateway.py's baseline (settings.BENCH_BARE):
    the table's current snapshot (one indexed query, as the policy path reads it) and the store lookup."""
    if code not in _bare:
        resource = Resource.objects.select_related("published").get(code=code)
        items = serving.items_of(resource.published)
        encrypted = frozenset(i.name for i in items if i.encrypted)
        cipher = fieldcrypt.cipher_for(resource, list(resource.published.items.all())) if encrypted else None
        resource_id = Resource._meta.pk.get_db_prep_value(resource.pk, connection)
        _bare[code] = (resource, items, encrypted, cipher, resource_id)
    resource, items, encrypted, cipher, resource_id = _bare[code]
    snapshot_id = fetch_one("SELECT current_snapshot_id FROM warehouse_table WHERE resource_id = %s",
                            [resource_id])[0]
    path, served = serving.store_for(resource.mount_target, snapshot_id, items)
    keys = tuple(i.name for i in items if i.is_key)
    differs = _find(serving.connection(path), path, encrypted, cipher, keys, body.get("candidates") or {}, "", [])
    return {"match": differs == [], "found": differs is not None, "differs": list(keys) if differs is None else differs,
            "snapshot_id": served}
