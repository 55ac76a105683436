"""Row conditions: a grant's row scope (its "own town only") and a consumer's filters on the records call.

A condition is {"item": name, "op": eq | in | prefix | range, "value": ...}: `in` takes a list, `range` a
[low, high] pair (either may be null). Values are checked against the item's data type here, once, and then
compiled two ways: to SQLite with parameters (the serving store answers records and verification) and to a
DuckDB expression with quoted literals (SQL over the warehouse and exports). Both compare the same text forms:
the serving store keeps dates and decimals as DuckDB's text, which sorts like the values for the fixed-width
forms used here (ISO dates; decimals are compared as numbers).
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass

from django.utils.translation import gettext as _

from shuzheng.catalog.models import DataType
from shuzheng.core.errors import FieldError
from shuzheng.core.sql import quote_ident, quote_literal

OPS = ("eq", "in", "prefix", "range")
MAX_IN = 1000
MAX_VALUE = 500


class FilterError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message

    def as_field_error(self) -> FieldError:
        return FieldError(self.field, self.message)


@dataclass(frozen=True)
class Condition:
    item: str
    op: str
    value: object  # the typed value (a list for `in`, a (low, high) tuple for `range`)
    data_type: str

    def as_dict(self) -> dict:
        value = self.value
        if self.op == "range":
            value = [_plain(v) for v in value]
        elif self.op == "in":
            value = [_plain(v) for v in value]
        else:
            value = _plain(value)
        return {"item": self.item, "op": self.op, "value": value}


def _plain(value):
    if isinstance(value, (dt.date, decimal.Decimal)):
        return str(value)
    return value


def typed(value, data_type: str, field: str):
    """A filter value as the item's type, or FilterError naming the field."""
    if value is None:
        raise FilterError(field, _("A value is required."))
    if isinstance(value, bool) and data_type != DataType.BOOLEAN:
        raise FilterError(field, _("Not a %(type)s value.") % {"type": data_type})
    text = str(value).strip()
    if len(text) > MAX_VALUE:
        raise FilterError(field, _("At most %(n)s characters.") % {"n": MAX_VALUE})
    try:
        if data_type == DataType.STRING:
            return str(value)
        if data_type == DataType.INTEGER:
            if isinstance(value, float) or not text.lstrip("-").isdigit():
                raise ValueError
            return int(text)
        if data_type == DataType.DECIMAL:
            number = decimal.Decimal(text)
            if not number.is_finite():
                raise ValueError
            return number
        if data_type == DataType.DATE:
            return dt.date.fromisoformat(text)
        if data_type == DataType.DATETIME:
            return dt.datetime.fromisoformat(text).replace(tzinfo=None)
        if data_type == DataType.BOOLEAN:
            if text.lower() in ("true", "1"):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise ValueError
    except (ValueError, decimal.InvalidOperation):
        pass
    raise FilterError(field, _("Not a valid %(type)s value: %(value)s") % {"type": data_type, "value": text[:50]})


def parse(raw, types: dict[str, str], field: str = "row_filter") -> list[Condition]:
    """Conditions from their JSON form; `types` maps each item that may be filtered to its data type."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list) or len(raw) > 20:
        raise FilterError(field, _("A list of at most 20 conditions."))
    conditions = []
    for i, entry in enumerate(raw):
        at = f"{field}[{i}]"
        if not isinstance(entry, dict):
            raise FilterError(at, _("A condition is an object with item, op and value."))
        item, op, value = entry.get("item"), entry.get("op"), entry.get("value")
        if item not in types:
            raise FilterError(f"{at}.item", _("Not an item you may filter on: %(item)s") % {"item": item})
        conditions.append(condition(item, op, value, types[item], at))
    return conditions


def condition(item: str, op: str, value, data_type: str, field: str) -> Condition:
    if op not in OPS:
        raise FilterError(f"{field}.op", _("One of: %(ops)s.") % {"ops": ", ".join(OPS)})
    if op == "in":
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN:
            raise FilterError(f"{field}.value", _("A list of 1 to %(n)s values.") % {"n": MAX_IN})
        return Condition(item, op, tuple(typed(v, data_type, f"{field}.value") for v in value), data_type)
    if op == "range":
        if not isinstance(value, list) or len(value) != 2 or value == [None, None]:
            raise FilterError(f"{field}.value", _("A pair [low, high]; one of them may be null."))
        if data_type in (DataType.STRING, DataType.BOOLEAN):
            raise FilterError(f"{field}.op", _("Ranges apply to numbers and dates."))
        low, high = (None if v is None else typed(v, data_type, f"{field}.value") for v in value)
        if low is not None and high is not None and low > high:
            raise FilterError(f"{field}.value", _("The low end is above the high end."))
        return Condition(item, op, (low, high), data_type)
    if op == "prefix":
        if data_type != DataType.STRING:
            raise FilterError(f"{field}.op", _("Prefixes apply to text items."))
        if not isinstance(value, str) or not value:
            raise FilterError(f"{field}.value", _("A non-empty text."))
    return Condition(item, op, typed(value, data_type, f"{field}.value"), data_type)


# ---- compilation ----

def store_value(value, data_type: str):
    """A value as the serving store keeps it (see serving.py): text for dates and decimals."""
    if data_type == DataType.BOOLEAN:
        return int(value)
    if data_type in (DataType.DATE, DataType.DECIMAL):
        return str(value)
    if data_type == DataType.DATETIME:
        return value.isoformat(sep=" ")
    return value


def to_sqlite(conditions: list[Condition], column=quote_ident) -> tuple[str, list]:
    """(WHERE text or "", parameters) for the serving store; `column` gives each item's SQL expression."""
    parts, params = [], []
    for c in conditions:
        col = column(c.item)
        if c.data_type == DataType.DECIMAL:
            col = f"CAST({col} AS REAL)"  # stored as exact text; compared as a number
        conv = (lambda v: float(v)) if c.data_type == DataType.DECIMAL else (lambda v: store_value(v, c.data_type))
        if c.op == "eq":
            parts.append(f"{col} = ?")
            params.append(conv(c.value))
        elif c.op == "in":
            parts.append(f"{col} IN ({', '.join('?' * len(c.value))})")
            params.extend(conv(v) for v in c.value)
        elif c.op == "prefix":
            # substr, not LIKE: SQLite's LIKE ignores ASCII case and treats % and _ as wildcards.
            parts.append(f"substr({col}, 1, {len(c.value)}) = ?")
            params.append(c.value)
        else:
            low, high = c.value
            if low is not None:
                parts.append(f"{col} >= ?")
                params.append(conv(low))
            if high is not None:
                parts.append(f"{col} <= ?")
                params.append(conv(high))
    return " AND ".join(parts), params


def _duck_literal(value, data_type: str) -> str:
    if data_type == DataType.BOOLEAN:
        return "TRUE" if value else "FALSE"
    if data_type == DataType.INTEGER:
        return str(int(value))
    if data_type == DataType.DECIMAL:
        return f"CAST({quote_literal(str(value))} AS DECIMAL(38,10))"
    if data_type == DataType.DATE:
        return f"DATE {quote_literal(value.isoformat())}"
    if data_type == DataType.DATETIME:
        return f"TIMESTAMP {quote_literal(value.isoformat(sep=' '))}"
    return quote_literal(value)


def to_duckdb(conditions: list[Condition], column=quote_ident) -> str | None:
    """A DuckDB boolean over the item columns, or None when there are no conditions."""
    parts = []
    for c in conditions:
        col = column(c.item)
        if c.op == "eq":
            parts.append(f"{col} = {_duck_literal(c.value, c.data_type)}")
        elif c.op == "in":
            parts.append(f"{col} IN ({', '.join(_duck_literal(v, c.data_type) for v in c.value)})")
        elif c.op == "prefix":
            parts.append(f"starts_with({col}, {quote_literal(c.value)})")
        else:
            low, high = c.value
            if low is not None:
                parts.append(f"{col} >= {_duck_literal(low, c.data_type)}")
            if high is not None:
                parts.append(f"{col} <= {_duck_literal(high, c.data_type)}")
    return " AND ".join(f"({p})" for p in parts) if parts else None
