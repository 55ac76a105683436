"""Open data (无条件开放): the rows of a resource its provider opened to everyone, read without a grant.

A resource qualifies when it is published, its open type is "open" and it is mounted as a warehouse table.
Rows come from the serving store of the table's current snapshot (sharing.serving: the read-only SQLite copy
the gateway answers from), so paging, exact filters and sorts cost an indexed or short scan, never a read of
the Parquet files.

What is served: only items the classification policy leaves in clear for anyone — level "general", not
sensitive personal information, not encrypted at rest (security.policy.encrypts), and whose default mask
(security.policy.mask_rule) is "clear". Every other item is withheld whole: it is neither returned nor may it
be filtered, searched or sorted on (a filter on a hidden column would reveal it one guess at a time). An open
resource should hold no such item; if one does, opening it does not open that item.

Every call is audited like a gateway call (sharing.recorder: journaled, carried into the audit trail in
batches): `share.datastore_search` with what was asked and how many rows went out, or `share.refused` with
the reason.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass

from django.utils.translation import gettext as _

from shuzheng.audit.services import Entry
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import DataType, Level, MountKind, OpenType, Resource, Status
from shuzheng.core.errors import FieldError, Forbidden, NotFound, ServiceError, ValidationFailed
from shuzheng.org.services import Actor
from shuzheng.security import policy
from shuzheng.sharing import filters, serving
from shuzheng.sharing.recorder import recorder

LIMIT_DEFAULT = 100
LIMIT_MAX = 1000
OFFSET_MAX = 100_000_000
Q_MAX = 200
ROW_ID = "_id"  # the row's number in its snapshot's store: a stable order and a handle, as CKAN's _id


@dataclass(frozen=True)
class Field:
    name: str
    data_type: str


def clear_for_everyone(item) -> bool:
    """Whether the policy lets anyone read `item` in clear (see the module's docstring)."""
    return (item.level == Level.GENERAL and not item.sensitive_personal and not policy.encrypts(item)
            and policy.mask_rule(item.subject, item.level, item.sensitive_personal) == "clear")


def is_open(resource: Resource) -> bool:
    """Whether `resource` serves open rows: published, open, mounted as a warehouse table."""
    version = resource.published
    return (resource.status == Status.PUBLISHED and version is not None and version.open_type == OpenType.OPEN
            and resource.mount_kind == MountKind.TABLE)


def open_resource(actor: Actor, code: str) -> Resource:
    """The open resource `code`, or the refusal: 404 when `actor` may not see it, it is not published or has
    no warehouse table; 403 when it is there but not open (its data go through sharing applications)."""
    resource = catalog.get_resource(actor, code)
    if resource.status != Status.PUBLISHED or resource.published is None:
        raise NotFound(_("Resource %(code)s is not published.") % {"code": resource.code})
    if resource.published.open_type != OpenType.OPEN:
        raise Forbidden(_("Resource %(code)s is not open data; its data are shared only through an approved "
                          "sharing application.") % {"code": resource.code})
    if resource.mount_kind != MountKind.TABLE:
        raise NotFound(_("Resource %(code)s has no warehouse table, so there are no rows to read.")
                       % {"code": resource.code})
    return resource


def fields_of(resource: Resource) -> tuple[list[Field], list[str]]:
    """(fields served, names of the items withheld) of an open resource's published version."""
    served, withheld = [], []
    for item in resource.published.items.order_by("position"):
        (served if clear_for_everyone(item) else withheld).append(item)
    return [Field(i.name, i.data_type) for i in served], [i.name for i in withheld]


def records(actor: Actor, code: str, *, filters_: dict | None = None, q=None, fields: list[str] | None = None,
            sort: list[tuple[str, bool]] | None = None, limit: int = LIMIT_DEFAULT, offset: int = 0,
            include_total: bool = True, call: str = "datastore_search") -> dict:
    """A page of an open resource's rows: exact `filters_` ({field: value or [values]}), `q` (text every row
    returned contains in one of its text fields, or {field: text}), `fields` to return, `sort` as (field,
    descending) pairs, `limit` and `offset`. Returns {resource, snapshot_id, fields, withheld, records, total}.
    Audited, refusals included."""
    resource = None
    details = {"filters": _audited(filters_), "q": _audited(q), "fields": _audited(fields), "offset": offset,
               "limit": limit}
    try:
        resource = open_resource(actor, code)
        result = _read(resource, filters_ or {}, q, fields, sort or [], limit, offset, include_total)
    except ServiceError as exc:
        refused(actor, resource.code if resource else code, exc, call, details)
        raise
    recorder.record(Entry(actor.name, actor.org_code, actor.ip, f"share.{call}", "catalog.resource", str(resource.id),
                          {"call": call, "resource": resource.code, "outcome": "ok", "rows": len(result["records"]),
                           "snapshot_id": result["snapshot_id"], **details}))
    return result


def refused(actor: Actor, resource: str, exc: ServiceError, call: str = "datastore_search",
            details: dict | None = None) -> None:
    """Audits a refused call, as the gateway audits its refusals."""
    summary = {"call": call, "resource": str(resource)[:100], "outcome": "refused", "status": exc.status,
               "reason": str(exc.detail)[:300], **(details or {})}
    recorder.record(Entry(actor.name, actor.org_code, actor.ip, "share.refused", "catalog.resource", "", summary))


def _audited(value):
    """A parameter as the audit trail keeps it: bounded (a call may send megabytes of filters)."""
    text = value if isinstance(value, str) else repr(value) if value is not None else None
    return text[:300] if text is not None else None


def _read(resource: Resource, wanted: dict, q, fields, sort, limit: int, offset: int, include_total: bool) -> dict:
    served, withheld = fields_of(resource)
    types = {f.name: f.data_type for f in served}
    errors: list[FieldError] = []

    def known(name, field: str, allow_row_id: bool = True) -> bool:
        if allow_row_id and name == ROW_ID:
            return True
        if name in types:
            return True
        if name in withheld:
            errors.append(FieldError(field, _("%(item)s is not open: its level or sensitivity keeps it out of "
                                              "open data.") % {"item": name}))
        else:
            errors.append(FieldError(field, _("%(resource)s has no field %(item)s.")
                                     % {"resource": resource.code, "item": str(name)[:100]}))
        return False

    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= LIMIT_MAX:
        errors.append(FieldError("limit", _("0 to %(n)s rows.") % {"n": LIMIT_MAX}))
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= OFFSET_MAX:
        errors.append(FieldError("offset", _("0 to %(n)s.") % {"n": OFFSET_MAX}))
    chosen = [n for n in (fields or []) if known(n, "fields")]
    conditions = []
    if not isinstance(wanted, dict):
        errors.append(FieldError("filters", _("An object of field names and the values wanted.")))
        wanted = {}
    for name, value in wanted.items():
        at = f"filters.{str(name)[:100]}"
        if not known(name, at, allow_row_id=False):
            continue
        scalars = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) for v in scalars):
            errors.append(FieldError(at, _("A value, or a list of values, to match exactly.")))
            continue
        try:
            if isinstance(value, list):
                conditions.append(filters.condition(name, "in", value, types[name], at))
            else:
                conditions.append(filters.condition(name, "eq", value, types[name], at))
        except filters.FilterError as exc:
            errors.append(FieldError(at, exc.message))
    texts = []
    if isinstance(q, dict):
        for name, text in q.items():
            if known(name, f"q.{str(name)[:100]}", allow_row_id=False):
                texts.append(([name], text, f"q.{name}"))
    elif q not in (None, ""):
        texts.append(([f.name for f in served if f.data_type == DataType.STRING], q, "q"))
    for _names, text, at in texts:
        if not isinstance(text, str) or not text or len(text) > Q_MAX:
            errors.append(FieldError(at, _("A text of 1 to %(n)s characters.") % {"n": Q_MAX}))
    order = []
    for name, descending in sort:
        if known(name, "sort"):
            order.append((name, descending))
    if errors:
        raise ValidationFailed.listing(errors)

    columns = [f for f in served if not chosen or f.name in chosen]
    show_id = not chosen or ROW_ID in chosen
    result = {"resource": resource.code, "snapshot_id": None, "withheld": withheld,
              "fields": ([Field(ROW_ID, DataType.INTEGER)] if show_id else []) + columns, "records": [],
              "total": 0 if include_total else None}
    from shuzheng.warehouse.models import Table

    snapshot_id = Table.objects.filter(resource=resource).values_list("current_snapshot_id", flat=True).first()
    path, served_snapshot = serving.store_for(resource.mount_target, snapshot_id, serving.items_of(resource.published))
    if path is None:  # mounted, nothing loaded yet: an empty table
        return result
    con = serving.connection(path)
    where, params = filters.to_sqlite(conditions)
    clauses = [where] if where else []
    for names, text, _at in texts:
        if names:
            clauses.append("(" + " OR ".join(f"instr(CAST({filters.quote_ident(n)} AS TEXT), ?) > 0"
                                             for n in names) + ")")
            params = params + [text] * len(names)
        else:
            clauses.append("0")  # a text search over a resource without text fields finds nothing
    where_sql = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order_sql = ", ".join(_order(n, d, types) for n, d in order) + (", " if order else "") + "rowid"
    select = ", ".join(["rowid"] + [filters.quote_ident(f.name) for f in columns])
    rows = con.execute(f"SELECT {select} FROM data{where_sql} ORDER BY {order_sql} LIMIT ? OFFSET ?",
                       params + [limit, offset]).fetchall() if limit else []
    result["snapshot_id"] = served_snapshot
    result["records"] = [dict(([(ROW_ID, row[0])] if show_id else [])
                              + [(f.name, _value(v, f.data_type)) for f, v in zip(columns, row[1:])])
                         for row in rows]
    if include_total:
        result["total"] = con.execute(f"SELECT count(*) FROM data{where_sql}", params).fetchone()[0]
    return result


def _order(name: str, descending: bool, types: dict) -> str:
    if name == ROW_ID:
        col = "rowid"
    else:
        col = filters.quote_ident(name)
        if types[name] == DataType.DECIMAL:
            col = f"CAST({col} AS REAL)"  # kept as exact text; ordered as a number
    return f"{col} {'DESC' if descending else 'ASC'}"


def _value(value, data_type: str):
    """A stored value typed back (the store keeps decimals, dates and times as text, booleans as 0/1)."""
    if value is None:
        return None
    if data_type == DataType.BOOLEAN:
        return bool(value)
    if data_type == DataType.DECIMAL:
        return decimal.Decimal(value)
    if data_type == DataType.DATETIME:
        return str(value).replace(" ", "T", 1)
    return value
