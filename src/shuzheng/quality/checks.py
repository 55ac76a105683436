"""Quality rules compiled to vectorised DuckDB SQL.

A load of millions of rows must be validated in one pass, never row by row in Python. So each rule is
compiled into one or more DuckDB boolean expressions over the typed staging table (`typed`, one column per
data item plus `_row`, the source record number), each TRUE when the row fails one specific check (NULL or
FALSE when it passes). The pipeline puts them all in one SELECT:

    SELECT *, <sql1> AS f1, <sql2> AS f2, ... FROM typed

and DuckDB evaluates them column-at-a-time, with no Python function in the loop. Formats are RE2 regular
expressions (faster in DuckDB than the equivalent substring tests); the check characters of the GB 11643
citizen ID and the GB 32100 credit code are integer arithmetic over substrings. They agree with
`shuzheng.core.validators` (the tests compare them on generated numbers).

Conventions shared by every kind:
- identifiers are double-quoted and every literal single-quoted with its quotes doubled; no user text is
  interpolated unescaped;
- columns are qualified with the table name (`"typed"."item"`, see `table=`), so correlated subqueries over
  other relations with the same column names stay unambiguous;
- a NULL value, or a text value that is empty or only whitespace, is missing: only `not_null` reports it,
  every other check passes it (an optional item left blank is not invalid);
- "today" is DuckDB's current_date in the connection's TimeZone (DuckDB takes it from TZ, which Django sets
  from settings.TIME_ZONE);
- each bad value gets the most specific reason: the sub-checks of an identifier (birth date, region, check
  character) only fire when its format is right.

DuckDB computes a subexpression repeated across the SELECT list once, but it does not look past the first
operand of AND or the first condition of CASE (the rest may run on fewer rows). So the expensive shared part
(the format regex, the 17-digit number) comes first or outside, and the cheap guard after it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import duckdb
from django.utils.translation import gettext as _

from shuzheng.core import sql

KINDS = (
    "not_null",
    "unique",
    "pattern",
    "range",
    "code_table",
    "id_number",
    "credit_code",
    "mobile",
    "date_past",
    "id_consistency",
    "reference",
    "cross_source",
)
DIMENSIONS = ("completeness", "validity", "uniqueness", "consistency")

ROW_COLUMN = "_row"  # the source record number in the staging table: unique, ascending

# Province-level administrative division codes (GB/T 2260), the first two digits of a citizen ID number.
PROVINCES = tuple(
    f"{code}"
    for code in (
        *range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55), *range(61, 66), 71, 81, 82,
    )
)

# Date forms accepted in text columns (YYYY-MM-DD, YYYYMMDD, YYYY/M/D, YYYY年M月D日): (shape, strptime format).
# The shape is matched first, so the lenient strptime never reads '2024035' or '24-03-05' as a date.
DATE_FORMATS = (
    ("[0-9]{4}-[0-9]{2}-[0-9]{2}", "%Y-%m-%d"),
    ("[0-9]{8}", "%Y%m%d"),
    ("[0-9]{4}/[0-9]{1,2}/[0-9]{1,2}", "%Y/%m/%d"),
    ("[0-9]{4}年[0-9]{1,2}月[0-9]{1,2}日", "%Y年%m月%d日"),
)

# A text value is blank when it is empty or made only of these: space, tab, CR, LF, no-break, ideographic space.
_BLANK = " \t\r\n\u00a0\u3000"

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def dimension_of(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown check kind: {kind!r}")
    if kind == "not_null":
        return "completeness"
    if kind == "unique":
        return "uniqueness"
    if kind in ("id_consistency", "reference", "cross_source"):
        return "consistency"
    return "validity"


@dataclass(frozen=True)
class Check:
    rule_id: str  # opaque id carried into the result
    kind: str
    items: tuple[str, ...]  # the columns the rule reads; failures are reported on items[0] (unique: every item)
    params: dict = field(default_factory=dict, hash=False)
    blocking: bool = True


@dataclass(frozen=True)
class CompiledCheck:
    rule_id: str
    kind: str
    code: str  # stable machine code of the specific failure, e.g. "id_number.check_digit"
    item: str  # the column the failure is reported on
    sql: str  # DuckDB boolean expression, TRUE when the row fails
    message: str
    blocking: bool
    dimension: str


# --- SQL text -------------------------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    """core.sql's quoting, refusing what no rule may name (the compiler's ValueError contract)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"not a usable identifier: {name!r}")
    return sql.quote_ident(name)


def quote_literal(text: str) -> str:
    if not isinstance(text, str) or "\x00" in text:
        raise ValueError(f"not a usable string literal: {text!r}")
    return sql.quote_literal(text)


def quote_relation(name: str) -> str:
    """A table or view name, optionally qualified with dots (`schema.table`), each part quoted."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"not a usable relation name: {name!r}")
    return ".".join(quote_ident(part) for part in name.split("."))


_FAMILIES = {
    "text": ("VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR"),
    "number": ("TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
               "UBIGINT", "UHUGEINT", "INT1", "INT2", "INT4", "INT8", "DECIMAL", "NUMERIC", "FLOAT", "REAL",
               "DOUBLE", "FLOAT4", "FLOAT8"),
    "date": ("DATE",),
    "timestamp": ("TIMESTAMP", "DATETIME", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_US", "TIMESTAMP_NS"),
    "timestamptz": ("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"),
    "boolean": ("BOOLEAN", "BOOL"),
}
_FAMILY_OF = {name: family for family, names in _FAMILIES.items() for name in names}


def _type_family(type_name: str) -> str:
    """text, number, date, timestamp, timestamptz, boolean or other, from a DuckDB type name like DECIMAL(18,4)."""
    base = re.sub(r"\s+", " ", type_name.split("(", 1)[0].strip().upper())
    return _FAMILY_OF.get(base, "other")


def _text(expr: str, family: str) -> str:
    return expr if family == "text" else f"CAST({expr} AS VARCHAR)"


def _blank(text_expr: str) -> str:
    """TRUE for a blank text. Trimming a character set is slow, so only values starting with a control
    character, a space, a no-break or an ideographic space are trimmed. (Not an IN list: DuckDB plans those as
    joins.)"""
    first = f"ascii({text_expr})"
    return (
        f"CASE WHEN {first} <= 32 OR {first} = 160 OR {first} = 12288 "
        f"THEN trim({text_expr}, {quote_literal(_BLANK)}) = '' ELSE {text_expr} = '' END"
    )


def _present(expr: str, family: str) -> str:
    """TRUE when the value is there: not NULL and, for text, not blank."""
    if family == "text":
        return f"NOT {_blank(expr)}"
    return f"{expr} IS NOT NULL"


def _trimmed(text_expr: str) -> str:
    """Text trimmed of spaces, NULL when nothing is left."""
    return f"nullif(trim({text_expr}), '')"


def _in_list(expr: str, values) -> str:
    return f"{expr} IN ({', '.join(quote_literal(v) for v in values)})"


def _parse_text_date(text_expr: str) -> str:
    """A DATE from text in one of DATE_FORMATS, NULL when it is in none of them or not a real date."""
    t = text_expr
    whens = " ".join(
        f"WHEN regexp_full_match({t}, {quote_literal(shape)}) "
        f"THEN CAST(try_strptime({t}, {quote_literal(fmt)}) AS DATE)"
        for shape, fmt in DATE_FORMATS
    )
    return f"CASE {whens} END"


def _as_date(expr: str, family: str) -> str:
    if family == "date":
        return expr
    if family in ("timestamp", "timestamptz"):
        return f"CAST({expr} AS DATE)"
    return _parse_text_date(_text(expr, family))


# GB 11643 pieces over a VARCHAR expression x.


def _id_format_ok(x: str) -> str:
    return f"regexp_full_match({x}, '[0-9]{{17}}[0-9X]')"


def _id_digits(x: str) -> str:
    """The first 17 characters as one BIGINT (NULL unless they are digits); DuckDB computes it once per row."""
    return f"try_cast(substr({x}, 1, 17) AS BIGINT)"


def _id_digit(x: str, position: int) -> str:
    """Digit `position` (1-17) of the ID, by integer division: cheaper than 17 substrings."""
    return f"({_id_digits(x)} // {10 ** (17 - position)} % 10)"


def _id_birth_date(x: str) -> str:
    return f"CAST(try_strptime(substr({x}, 7, 8), '%Y%m%d') AS DATE)"


def _id_check_char(x: str) -> str:
    """ISO 7064 MOD 11-2 over the first 17 digits."""
    total = " + ".join(f"{_id_digit(x, i + 1)} * {w}" for i, w in enumerate(_ID_WEIGHTS))
    return f"substr('{_ID_CHECK}', CAST(({total}) % 11 AS INTEGER) + 1, 1)"


# GB 32100 pieces.


_CC_CLASS = "[0-9A-HJ-NPQRTUWXY]"


def _cc_format_ok(x: str) -> str:
    return f"regexp_full_match({x}, '{_CC_CLASS}{{2}}[0-9]{{6}}{_CC_CLASS}{{10}}')"


def _cc_value(x: str, position: int) -> str:
    """The value of character `position` (1-17): its index in the alphabet. Characters 3-8 are digits, read from
    one INTEGER as for the citizen ID; the others are looked up."""
    if 3 <= position <= 8:
        return f"(try_cast(substr({x}, 3, 6) AS INTEGER) // {10 ** (8 - position)} % 10)"
    return f"(instr('{_CC_ALPHABET}', substr({x}, {position}, 1)) - 1)"


def _cc_check_char(x: str) -> str:
    """GB 32100 MOD 31 over the first 17 characters."""
    total = " + ".join(f"{_cc_value(x, i + 1)} * {w}" for i, w in enumerate(_CC_WEIGHTS))
    return f"substr('{_CC_ALPHABET}', CAST((31 - ({total}) % 31) % 31 AS INTEGER) + 1, 1)"


# --- parameters ---------------------------------------------------------------------------------------------

_SINGLE_ITEM = {"not_null", "pattern", "range", "code_table", "id_number", "credit_code", "mobile", "date_past",
                "reference", "cross_source"}

_PARAMS = {
    "not_null": (),
    "unique": (),
    "pattern": ("regex",),
    "range": ("min", "max"),
    "code_table": ("values",),
    "id_number": ("regions",),
    "credit_code": (),
    "mobile": (),
    "date_past": (),
    "id_consistency": ("id", "birth", "sex", "male", "female"),
    "reference": ("resource", "item"),
    "cross_source": ("resource", "key", "item"),
}

_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_DATETIME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?$")


def _bound(value):
    """A range bound as Decimal, date or datetime (from a number or an ISO string); raises ValueError."""
    if isinstance(value, _dt.date):  # datetime too
        return value
    if isinstance(value, str):
        value = value.strip()
        if _DATE_RE.match(value):
            return _dt.date.fromisoformat(value)
        if _DATETIME_RE.match(value):
            return _dt.datetime.fromisoformat(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise ValueError(f"not a number or a date: {value!r}")
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a number or a date: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _bound_kind(bound) -> str:
    if isinstance(bound, _dt.datetime):
        return "datetime"
    if isinstance(bound, _dt.date):
        return "date"
    return "number"


@functools.lru_cache(maxsize=256)
def _regex_problem(regex: str) -> str | None:
    """DuckDB's own verdict (RE2 syntax) on a regular expression, or None when it compiles."""
    try:
        with duckdb.connect(":memory:") as con:
            con.execute(f"SELECT regexp_full_match('', {quote_literal(regex)})").fetchall()
    except duckdb.Error as exc:
        return str(exc).split("\n", 1)[0]
    return None


def _is_name(value) -> bool:
    return isinstance(value, str) and value != "" and "\x00" not in value


def validate_params(kind: str, items: list[str], params: dict) -> list[tuple[str, str]]:
    """Problems with a rule's specification as (field, message) pairs; empty when it is fine."""
    if kind not in KINDS:
        return [("kind", _("Unknown kind of check."))]
    problems: list[tuple[str, str]] = []
    items = list(items or ())
    if not all(_is_name(i) for i in items):
        problems.append(("items", _("Every item must be a non-empty column name.")))
    elif len(set(items)) != len(items):
        problems.append(("items", _("An item is named twice.")))
    if kind == "unique" and not items:
        problems.append(("items", _("unique needs at least one item.")))
    elif kind in _SINGLE_ITEM and len(items) != 1:
        problems.append(("items", _("This kind of check reads exactly one item.")))
    elif kind == "id_consistency" and not items:
        problems.append(("items", _("id_consistency needs the citizen ID item first.")))
    if not isinstance(params, dict):
        return [*problems, ("params", _("Parameters must be a mapping."))]
    for key in params:
        if key not in _PARAMS[kind]:
            problems.append((f"params.{key}", _("Unknown parameter for this kind of check.")))
    problems += _PARAM_CHECKS.get(kind, lambda items, params: [])(items, params)
    return problems


def _pattern_params(items, params):
    regex = params.get("regex")
    if not isinstance(regex, str) or not regex:
        return [("params.regex", _("A regular expression is required."))]
    if "\x00" in regex or _regex_problem(regex):
        return [("params.regex", _("Not a valid regular expression."))]
    return []


def _range_params(items, params):
    problems, bounds = [], {}
    for key in ("min", "max"):
        if params.get(key) is None:
            continue
        try:
            bounds[key] = _bound(params[key])
        except ValueError:
            problems.append((f"params.{key}", _("Must be a number or an ISO date (YYYY-MM-DD).")))
    if not problems and not bounds:
        problems.append(("params.min", _("A range needs a minimum, a maximum or both.")))
    if len(bounds) == 2:
        low, high = bounds["min"], bounds["max"]
        if (_bound_kind(low) == "number") != (_bound_kind(high) == "number"):
            problems.append(("params.max", _("The minimum and maximum must both be numbers or both dates.")))
        else:
            if _bound_kind(low) != _bound_kind(high):  # a date against a datetime: compare as datetimes
                low, high = (v if _bound_kind(v) == "datetime" else _dt.datetime.combine(v, _dt.time())
                             for v in (low, high))
            if low > high:
                problems.append(("params.min", _("The minimum is greater than the maximum.")))
    return problems


def _code_table_params(items, params):
    values = params.get("values")
    if not isinstance(values, (list, tuple)) or not values:
        return [("params.values", _("The list of allowed codes is required."))]
    if not all(isinstance(v, str) and "\x00" not in v for v in values):
        return [("params.values", _("Every allowed code must be a string."))]
    return []


def _id_number_params(items, params):
    regions = params.get("regions")
    if regions is None:
        return []
    if not isinstance(regions, (list, tuple)) or not regions or not all(
        isinstance(r, str) and r.isascii() and r.isdigit() and 2 <= len(r) <= 6 for r in regions
    ):
        return [("params.regions", _("Regions are administrative division code prefixes of 2 to 6 digits."))]
    return []


def _id_consistency_params(items, params):
    problems = []
    id_item = params.get("id")
    if id_item is not None and (not items or id_item != items[0]):
        problems.append(("params.id", _("The citizen ID item must be the first item.")))
    for key in ("birth", "sex"):
        if params.get(key) is not None and not _is_name(params[key]):
            problems.append((f"params.{key}", _("Must be a column name.")))
    if params.get("birth") is None and params.get("sex") is None:
        problems.append(("params.birth", _("Name the birth date item, the sex item or both.")))
    for key in ("male", "female"):
        if key in params and not (isinstance(params[key], str) and params[key].strip()):
            problems.append((f"params.{key}", _("Must be a non-empty code.")))
    if params.get("male", "1") == params.get("female", "2"):
        problems.append(("params.female", _("The male and female codes must differ.")))
    others = {params.get("birth"), params.get("sex")}
    if any(i not in others for i in items[1:]):
        problems.append(("items", _("After the citizen ID, only the birth date and sex items may be listed.")))
    return problems


def _reference_params(items, params):
    return [
        (f"params.{key}", _("Required."))
        for key in ("resource", "item")
        if not _is_name(params.get(key))
    ]


def _cross_source_params(items, params):
    problems = _reference_params(items, params)
    key = params.get("key")
    if not isinstance(key, (list, tuple)) or len(key) != 2 or not all(_is_name(k) for k in key):
        problems.append(("params.key", _("The key is a pair: the local key item and the source's key item.")))
    return problems


_PARAM_CHECKS = {
    "pattern": _pattern_params,
    "range": _range_params,
    "code_table": _code_table_params,
    "id_number": _id_number_params,
    "id_consistency": _id_consistency_params,
    "reference": _reference_params,
    "cross_source": _cross_source_params,
}


# --- compilation ----------------------------------------------------------------------------------------------


@dataclass
class _Context:
    check: Check
    columns: dict[str, str]
    refs: dict[str, str]
    existing: str | None
    table: str

    def col(self, name: str) -> str:
        if name not in self.columns:
            raise ValueError(f"rule {self.check.rule_id}: no column {name!r} in the table")
        return f"{quote_ident(self.table)}.{quote_ident(name)}"

    def family(self, name: str) -> str:
        return _type_family(self.columns[name])

    def text(self, name: str) -> str:
        """The column as VARCHAR, for the identifier checks: only text and number columns qualify."""
        family = self.family(name)
        if family not in ("text", "number"):
            raise ValueError(f"rule {self.check.rule_id}: {name!r} ({self.columns[name]}) is not a text column")
        return _text(self.col(name), family)

    def ref(self, resource: str) -> str:
        if resource not in self.refs:
            raise ValueError(f"rule {self.check.rule_id}: no relation for the resource {resource!r}")
        return quote_relation(self.refs[resource])

    def emit(self, code: str, item: str, sql: str, message: str) -> CompiledCheck:
        c = self.check
        return CompiledCheck(
            rule_id=c.rule_id,
            kind=c.kind,
            code=code,
            item=item,
            sql=sql,
            message=message,
            blocking=c.blocking,
            dimension=dimension_of(c.kind),
        )


def _not_null(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x, family = ctx.col(item), ctx.family(item)
    sql = f"({x} IS NULL OR {_blank(x)})" if family == "text" else f"({x} IS NULL)"
    return [ctx.emit("not_null.missing", item, sql, _("A value is required."))]


def _unique(ctx: _Context) -> list[CompiledCheck]:
    items = ctx.check.items
    cols = [ctx.col(i) for i in items]
    present = " AND ".join(_present(c, ctx.family(i)) for c, i in zip(cols, items))
    # Later than the first row with the key. A correlated min() rather than a window function: DuckDB turns it
    # into a hash aggregate of (key, _row) and a join, where a window would sort every column of the load.
    t, d = quote_ident(ctx.table), quote_ident("_q_dup")
    same = " AND ".join(f"{d}.{quote_ident(i)} = {c}" for i, c in zip(items, cols))
    first = f"(SELECT min({d}.{quote_ident(ROW_COLUMN)}) FROM {t} AS {d} WHERE {same})"
    duplicate = f"({present} AND {t}.{quote_ident(ROW_COLUMN)} > {first})"
    names = "、".join(items)
    message = _("The value of %(items)s appears earlier in this load.") % {"items": names}
    out = [ctx.emit("unique.duplicate", i, duplicate, message) for i in items]
    if ctx.existing:
        e = quote_ident("_q_existing")
        match = " AND ".join(f"{e}.{quote_ident(i)} = {c}" for i, c in zip(items, cols))
        exists = f"({present} AND EXISTS (SELECT 1 FROM {quote_relation(ctx.existing)} AS {e} WHERE {match}))"
        message = _("The value of %(items)s is already in the table.") % {"items": names}
        out += [ctx.emit("unique.exists", i, exists, message) for i in items]
    return out


def _pattern(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x, family = ctx.col(item), ctx.family(item)
    regex = ctx.check.params["regex"]
    sql = f"(NOT regexp_full_match({_text(x, family)}, {quote_literal(regex)}) AND {_present(x, family)})"
    return [ctx.emit("pattern.mismatch", item, sql, _("The value does not have the required form."))]


def _range(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x, family = ctx.col(item), ctx.family(item)
    out = []
    for key, op, code, message in (
        ("min", "<", "range.below_min", _("The value is below the minimum %(bound)s.")),
        ("max", ">", "range.above_max", _("The value is above the maximum %(bound)s.")),
    ):
        if ctx.check.params.get(key) is None:
            continue
        bound = _bound(ctx.check.params[key])
        kind = _bound_kind(bound)
        if family == "number" and kind == "number":
            literal, value = format(bound, "f"), x
        elif family == "date" and kind == "date":
            literal, value = f"DATE '{bound.isoformat()}'", x
        elif family in ("timestamp", "timestamptz") and kind == "date":  # a whole day, inclusive
            literal, value = f"DATE '{bound.isoformat()}'", f"CAST({x} AS DATE)"
        elif family in ("timestamp", "timestamptz") and kind == "datetime":
            type_name = "TIMESTAMPTZ" if family == "timestamptz" else "TIMESTAMP"
            literal, value = f"{type_name} '{bound.isoformat(sep=' ')}'", x
        else:
            raise ValueError(
                f"rule {ctx.check.rule_id}: a {kind} bound does not fit {item!r} ({ctx.columns[item]})"
            )
        out.append(ctx.emit(code, item, f"({value} {op} {literal})", message % {"bound": ctx.check.params[key]}))
    return out


def _code_table(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x, family = ctx.col(item), ctx.family(item)
    values = sorted(set(ctx.check.params["values"]))
    # IN over an unnested literal list is planned as a hash (mark) join: hundreds of codes cost what a few do,
    # where list_contains or a plain IN list compares every code with every row.
    listed = "[" + ", ".join(quote_literal(v) for v in values) + "]"
    sql = f"(NOT ({_text(x, family)} IN (SELECT unnest({listed}))) AND {_present(x, family)})"
    return [ctx.emit("code_table.unknown", item, sql, _("The value is not a code of the code table."))]


def _id_number(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x = ctx.text(item)
    ok = _id_format_ok(x)
    birth = _id_birth_date(x)
    region = _in_list(f"substr({x}, 1, 2)", PROVINCES)
    regions = ctx.check.params.get("regions")
    if regions:
        by_length: dict[int, set[str]] = {}
        for prefix in regions:
            by_length.setdefault(len(prefix), set()).add(prefix)
        allowed = " OR ".join(_in_list(f"substr({x}, 1, {n})", sorted(p)) for n, p in sorted(by_length.items()))
        region = f"{region} AND ({allowed})"
    return [
        ctx.emit("id_number.format", item, f"(NOT {ok} AND {_present(x, 'text')})",
                 _("A citizen ID number is 17 digits followed by a digit or X.")),
        ctx.emit("id_number.birth_date", item,
                 f"({ok} AND coalesce({birth} NOT BETWEEN DATE '1850-01-01' AND current_date, true))",
                 _("The birth date in the citizen ID number is not a real past date.")),
        ctx.emit("id_number.region", item, f"({ok} AND NOT ({region}))",
                 _("The region code of the citizen ID number is not valid here.")),
        # The guard wraps only the 18th character: DuckDB shares common subexpressions (the 17-digit number)
        # outside AND and CASE only, and the check character reads it 17 times.
        ctx.emit("id_number.check_digit", item,
                 f"(CASE WHEN {ok} THEN substr({x}, 18, 1) END <> {_id_check_char(x)})",
                 _("The check character of the citizen ID number is wrong.")),
    ]


def _credit_code(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x = ctx.text(item)
    ok = _cc_format_ok(x)
    return [
        ctx.emit("credit_code.format", item, f"(NOT {ok} AND {_present(x, 'text')})",
                 _("A unified social credit code is 18 digits and capital letters other than I, O, S, V and Z, "
                   "the third to eighth being digits.")),
        ctx.emit("credit_code.check_digit", item,
                 f"(CASE WHEN {ok} THEN substr({x}, 18, 1) END <> {_cc_check_char(x)})",
                 _("The check character of the unified social credit code is wrong.")),
    ]


def _mobile(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x = ctx.text(item)
    sql = f"(NOT regexp_full_match({x}, '1[3-9][0-9]{{9}}') AND {_present(x, 'text')})"
    return [ctx.emit("mobile.format", item, sql, _("Not a valid mobile number."))]


def _date_past(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x, family = ctx.col(item), ctx.family(item)
    future = _("The date is in the future.")
    if family == "date":
        return [ctx.emit("date_past.future", item, f"({x} > current_date)", future)]
    if family == "timestamp":
        return [ctx.emit("date_past.future", item, f"({x} > current_localtimestamp())", future)]
    if family == "timestamptz":
        return [ctx.emit("date_past.future", item, f"({x} > now())", future)]
    if family != "text":
        raise ValueError(f"rule {ctx.check.rule_id}: {item!r} ({ctx.columns[item]}) is not a date or text")
    parsed = _parse_text_date(x)
    return [
        ctx.emit("date_past.unparseable", item, f"({parsed} IS NULL AND {_present(x, family)})",
                 _("Not a date (write YYYY-MM-DD, YYYYMMDD, YYYY/M/D or YYYY年M月D日).")),
        ctx.emit("date_past.future", item, f"({parsed} > current_date)", future),
    ]


def _id_consistency(ctx: _Context) -> list[CompiledCheck]:
    params = ctx.check.params
    id_item = ctx.check.items[0]
    x = ctx.text(id_item)
    ok = _id_format_ok(x)
    out = []
    birth = params.get("birth")
    if birth is not None:
        b, family = ctx.col(birth), ctx.family(birth)
        if family not in ("date", "timestamp", "timestamptz", "text"):
            raise ValueError(f"rule {ctx.check.rule_id}: {birth!r} ({ctx.columns[birth]}) is not a date")
        sql = f"({ok} AND {_id_birth_date(x)} <> {_as_date(b, family)})"
        out.append(ctx.emit("id_consistency.birth", birth, sql,
                            _("The birth date differs from the one in the citizen ID number.")))
    sex = params.get("sex")
    if sex is not None:
        s = f"trim({_text(ctx.col(sex), ctx.family(sex))})"
        male, female = params.get("male", "1").strip(), params.get("female", "2").strip()
        parity = f"ascii(substr({x}, 17, 1)) % 2"  # the code of '0' is even
        sql = (f"({ok} AND CASE {s} WHEN {quote_literal(male)} THEN {parity} = 0 "
               f"WHEN {quote_literal(female)} THEN {parity} = 1 END)")
        message = _("The sex differs from the citizen ID number (17th digit odd for male, even for female).")
        out.append(ctx.emit("id_consistency.sex", sex, sql, message))
    return out


def _reference(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x, family = ctx.col(item), ctx.family(item)
    resource, remote = ctx.check.params["resource"], ctx.check.params["item"]
    r = quote_ident("_q_ref")
    # Compared as text, so a code held as VARCHAR here and as a number there still matches (and no cast can fail).
    sql = (f"({_present(x, family)} AND NOT EXISTS (SELECT 1 FROM {ctx.ref(resource)} AS {r} "
           f"WHERE CAST({r}.{quote_ident(remote)} AS VARCHAR) = {_text(x, family)}))")
    return [ctx.emit("reference.missing", item, sql,
                     _("The value is not found in %(resource)s.") % {"resource": resource})]


def _cross_source(ctx: _Context) -> list[CompiledCheck]:
    item = ctx.check.items[0]
    x, family = ctx.col(item), ctx.family(item)
    params = ctx.check.params
    local_key, remote_key = params["key"]
    k = ctx.col(local_key)
    r = quote_ident("_q_src")
    remote_value = _trimmed(f"CAST({r}.{quote_ident(params['item'])} AS VARCHAR)")
    sql = (f"EXISTS (SELECT 1 FROM {ctx.ref(params['resource'])} AS {r} "
           f"WHERE CAST({r}.{quote_ident(remote_key)} AS VARCHAR) = {_text(k, ctx.family(local_key))} "
           f"AND {remote_value} IS DISTINCT FROM {_trimmed(_text(x, family))})")
    message = _("The value differs from the authoritative source %(resource)s.") % {"resource": params["resource"]}
    return [ctx.emit("cross_source.differs", item, sql, message)]


_COMPILERS = {
    "not_null": _not_null,
    "unique": _unique,
    "pattern": _pattern,
    "range": _range,
    "code_table": _code_table,
    "id_number": _id_number,
    "credit_code": _credit_code,
    "mobile": _mobile,
    "date_past": _date_past,
    "id_consistency": _id_consistency,
    "reference": _reference,
    "cross_source": _cross_source,
}


def compile_check(
    check: Check,
    *,
    columns: dict[str, str],
    refs: dict[str, str] | None = None,
    existing: str | None = None,
    table: str = "typed",
) -> list[CompiledCheck]:
    """The DuckDB expressions of one rule over `table`, each TRUE when a row fails.

    columns: column name -> DuckDB type of `table`; refs: resource code -> relation holding its current rows;
    existing: relation holding the target table's current rows (append mode). Raises ValueError for bad
    parameters, a column not in `columns`, a missing ref, or a check that does not fit the column's type.
    """
    problems = validate_params(check.kind, list(check.items), check.params)
    if problems:
        raise ValueError(f"rule {check.rule_id}: " + "; ".join(f"{f}: {m}" for f, m in problems))
    ctx = _Context(check, dict(columns), dict(refs or {}), existing, table)
    for name in check.items:
        ctx.col(name)
    return _COMPILERS[check.kind](ctx)


def count_change_problem(previous_rows: int | None, rows: int, threshold: float) -> str | None:
    """A message when the row count moved more than `threshold` (0.5 = 50 %) from the previous snapshot."""
    if not previous_rows:
        return None
    change = abs(rows - previous_rows) / previous_rows
    if change <= threshold:
        return None
    message = _("The row count changed by %(change)s, from %(previous)d to %(rows)d (more than %(threshold)s allowed).")
    return message % {
        "change": f"{change:.1%}",
        "previous": previous_rows,
        "rows": rows,
        "threshold": f"{threshold:.0%}",
    }
