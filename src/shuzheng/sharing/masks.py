"""Dynamic masking (脱敏) for the data-sharing gateway: pure functions, no models.

A mask is a JSON-able spec dict, ``{"kind": <kind>, <param>: <value>, ...}``, stored on a grant per item.
Each spec has two equivalent forms, and the tests prove with hypothesis that they agree value for value:

- ``compile_py(spec, data_type, ...)`` gives a closure applied to single values when the gateway returns a
  page of records;
- ``sql(spec, column_sql, data_type, ...)`` gives a DuckDB expression, used when the gateway rewrites SQL
  and writes bulk exports.

NULL in gives NULL out for every kind. Lengths count Unicode code points in both forms (DuckDB's
``length``/``substring`` do, like Python's ``len``/slicing). Kinds and their parameters:

==========  ==========================  ================================================================
kind        params                      result
==========  ==========================  ================================================================
clear       —                           the value unchanged
null        —                           NULL, of the item's own type
keep        first, last (ints, 0–1000)  the first ``first`` and last ``last`` characters kept, every other
                                        character replaced by one ``*``; a text not longer than
                                        first+last is starred whole (a short value is never revealed)
hash        —                           HMAC-SM3 of the UTF-8 text form, 64 lower-case hex digits, keyed
                                        per consumer (see ``hash_key`` and ``register``)
year        —                           the year as an integer: of a date/datetime, or the four digits a
                                        string starts with (after leading spaces); NULL when there are
                                        none or they are 0000
age_band    width (1–50, default 10)    the band of completed years at a reference date ``today``, as text
                                        "60-69" (width 1 gives "60-60"); from a date of birth (date,
                                        datetime, or a string starting with a valid "YYYY-MM-DD" after
                                        leading spaces) or an integer age; NULL for an unparsable date,
                                        a negative age or a birth after ``today``
town        —                           an address cut after its town: up to the first 街道办事处, 街道, 乡
                                        or 镇 (the longest at that position) that starts at the third
                                        character or later; failing that, up to the first 区, 县 or 市
                                        from the third character on (a 区 in 小区 or 社区 does not
                                        count: those are below the town); failing both, NULL
                                        (suppressed: nothing safe to show). The "third character" rule
                                        keeps 镇江市…/乡宁县… from being cut to one character.
name        —                           first character, then one ``*`` per other character (张三 → 张*,
                                        欧阳娜娜 → 欧***); a one-character name → ``*``. (= keep 1/0.)
mobile      —                           keep 3/4: 13812345678 → 138****5678; other lengths follow keep.
id_number   —                           a 15-character (old) number keeps 6 and 3, any other keeps 6 and 4:
                                        130682199001011234 → 130682********1234; rules of keep.
bank_card   —                           spaces removed, then the first 4 and last 4 kept and the middle
                                        starred, shown as: first 4, the stars in blocks of 4 (the last
                                        block shorter), last 4, single spaces between blocks:
                                        6222021234567890 → "6222 **** **** 7890",
                                        6222021234567890123 → "6222 **** **** *** 0123"; 8 or fewer
                                        characters are all starred, in blocks of 4 ("**** ***").
==========  ==========================  ================================================================

Text-producing masks (keep, hash, town, name, mobile, id_number, bank_card) work on the value's text
form and return a string; for non-string items that is exactly DuckDB's ``CAST(x AS VARCHAR)`` of the
warehouse type: integers "42", decimals at scale 4 "12.3400", dates "2024-01-05", datetimes
"2024-01-05 10:00:00" (fraction with trailing zeros cut: ".12"), booleans "true"/"false".

Hash keys never appear in SQL: the expression is ``sz_mask_hash('<key id>', <text>)`` and ``register``
installs that function on a DuckDB connection with a key lookup (by default ``hash_key(key id)``, the key
id being the consumer's domain), so SQL text and logs carry only the key id.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.utils.translation import gettext as _

from shuzheng.core import crypto
from shuzheng.core.sql import quote_literal

DATA_TYPES = ("string", "integer", "decimal", "date", "datetime", "boolean")
KINDS = ("clear", "null", "keep", "hash", "year", "age_band", "town", "name", "mobile", "id_number", "bank_card")
LEVELS = ("general", "important", "core")
HASH_FUNCTION = "sz_mask_hash"
# The warehouse stores decimal items as DECIMAL(18,4) (warehouse.lake.DECIMAL; a test keeps the two equal);
# not imported, so that this module stays light.
DECIMAL_SCALE = 4
_DECIMAL_SQL = "DECIMAL(18,%d)" % DECIMAL_SCALE
# The DuckDB type of each item type (warehouse.lake.DUCK_TYPES): NULL masks keep the column's type.
_SQL_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "decimal": _DECIMAL_SQL, "date": "DATE",
              "datetime": "TIMESTAMP", "boolean": "BOOLEAN"}


class MaskError(ValueError):
    """A mask spec that cannot be used: unknown kind, bad parameters, or a kind not for the item's type."""


# ---------------------------------------------------------------------------------------------------------
# Kinds: where each applies, its parameters, and the type it produces
# ---------------------------------------------------------------------------------------------------------

_REQUIRED = object()
_ALL = frozenset(DATA_TYPES)
_TEXTUAL = frozenset({"string", "integer"})  # identifiers that may be stored as numbers
# kind -> (data types it applies to, {param: (default or _REQUIRED, min, max)}, output type or None = same)
_KIND_RULES: dict[str, tuple[frozenset, dict, str | None]] = {
    "clear": (_ALL, {}, None),
    "null": (_ALL, {}, None),
    "keep": (_ALL, {"first": (_REQUIRED, 0, 1000), "last": (_REQUIRED, 0, 1000)}, "string"),
    "hash": (_ALL, {}, "string"),
    "year": (frozenset({"date", "datetime", "string"}), {}, "integer"),
    "age_band": (frozenset({"date", "datetime", "string", "integer"}), {"width": (10, 1, 50)}, "string"),
    "town": (frozenset({"string"}), {}, "string"),
    "name": (frozenset({"string"}), {}, "string"),
    "mobile": (_TEXTUAL, {}, "string"),
    "id_number": (_TEXTUAL, {}, "string"),
    "bank_card": (_TEXTUAL, {}, "string"),
}
assert tuple(_KIND_RULES) == KINDS


def validate(spec: Any, data_type: str) -> dict:
    """The normalised spec (kind first, every parameter present) or MaskError saying what is wrong."""
    if data_type not in DATA_TYPES:
        raise MaskError(_('Unknown data type "%(type)s".') % {"type": data_type})
    if not isinstance(spec, Mapping):
        raise MaskError(_("A mask must be an object with a \"kind\"."))
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in _KIND_RULES:
        raise MaskError(_('Unknown mask kind "%(kind)s"; expected one of: %(kinds)s.')
                        % {"kind": kind, "kinds": ", ".join(KINDS)})
    types, params, _out = _KIND_RULES[kind]
    if data_type not in types:
        raise MaskError(_('The mask "%(kind)s" does not apply to %(type)s items.') % {"kind": kind, "type": data_type})
    unknown = sorted(set(spec) - set(params) - {"kind"}, key=str)
    if unknown:
        raise MaskError(_('The mask "%(kind)s" has no parameter "%(param)s".') % {"kind": kind, "param": unknown[0]})
    out = {"kind": kind}
    for name, (default, low, high) in params.items():
        value = spec.get(name, default)
        if value is _REQUIRED:
            raise MaskError(_('The mask "%(kind)s" needs the parameter "%(param)s".') % {"kind": kind, "param": name})
        # bool is an int in Python; JSON true must not pass for 1.
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise MaskError(_('The parameter "%(param)s" of the mask "%(kind)s" must be a whole number from '
                              '%(low)d to %(high)d.') % {"param": name, "kind": kind, "low": low, "high": high})
        out[name] = value
    return out


def output_type(spec: Any, data_type: str) -> str:
    """The data type of the masked value."""
    kind = validate(spec, data_type)["kind"]
    return _KIND_RULES[kind][2] or data_type


# ---------------------------------------------------------------------------------------------------------
# Defaults from the sensitivity level
# ---------------------------------------------------------------------------------------------------------

# National data element codes (catalog/data/elements.json) whose meaning fixes the mask.
_ELEMENT_KINDS = {
    "DE00001": "id_number",  # 公民身份号码
    "DE00046": "id_number",  # 残疾人证号: the holder's ID number and two digits
    "DE00002": "name",  # 姓名
    "DE00012": "name",  # 法定代表人姓名
    "DE00008": "mobile",  # 联系电话 (mobile or fixed line; keep 3/4 suits both)
    "DE00005": "year",  # 出生日期
    "DE00006": "town",  # 户籍地址
    "DE00007": "town",  # 现住址
    "DE00037": "town",  # 地址
}
# Then the item name, in this order: the first rule whose words occur in the name wins. "姓名" is a suffix
# test (联系人姓名, 身份证姓名 are names); the rest are substring tests.
_NAME_RULES = (
    ("id_number", ("身份号码", "身份证", "证件号码")),
    ("mobile", ("手机", "电话")),
    ("bank_card", ("银行卡", "银行账号", "账号")),
    ("town", ("地址", "住址")),
    ("year", ("出生日期", "出生年月")),
    ("age_band", ("年龄",)),
)


def default_mask(name: str, data_type: str, level: str, element: str | None = None, *, subject: str | None = None,
                 sensitive: bool = False) -> dict:
    """The mask a grant gets for an item unless the approver chooses another. The classification policy
    (security.policy "default_masks") picks the rule from the item's data category, level and sensitive flag;
    the packaged rules are: core or sensitive personal → hash for strings (one consumer can still match
    records), null otherwise; important → suggested; general → clear. "suggested" goes by the data element
    code, else the item name, else by type (dates → year, booleans → null, anything else → keep 1/1); a
    suggested kind that does not apply to the item's type falls back the same way."""
    from shuzheng.security import policy

    if level not in LEVELS:
        raise MaskError(_('Unknown sensitivity level "%(level)s".') % {"level": level})
    if data_type not in DATA_TYPES:
        raise MaskError(_('Unknown data type "%(type)s".') % {"type": data_type})
    rule = policy.mask_rule(subject, level, sensitive)
    if rule == "clear":
        return {"kind": "clear"}
    if rule == "null":
        return {"kind": "null"}
    if rule == "hash":
        return {"kind": "hash"} if data_type == "string" else {"kind": "null"}
    kind = _ELEMENT_KINDS.get(element or "")
    if kind is None:
        name = name or ""
        if name.endswith("姓名"):
            kind = "name"
        else:
            kind = next((k for k, words in _NAME_RULES if any(w in name for w in words)), None)
    if kind == "age_band" and data_type != "integer":
        kind = None  # an age written as text ("67") is no date of birth: age_band would give only NULLs
    if kind is not None and data_type in _KIND_RULES[kind][0]:
        return validate({"kind": kind}, data_type)
    if data_type in ("date", "datetime"):
        return {"kind": "year"}
    if data_type == "boolean":
        return {"kind": "null"}  # "true"/"false" under keep 1/1 would still read as the value
    return {"kind": "keep", "first": 1, "last": 1}


# ---------------------------------------------------------------------------------------------------------
# Text forms: Python values as DuckDB's CAST(x AS VARCHAR) writes them
# ---------------------------------------------------------------------------------------------------------

_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)


def _decimal_text(v) -> str:
    d = v if isinstance(v, Decimal) else Decimal(str(v))
    d = d.quantize(_QUANTUM, rounding=ROUND_HALF_UP)  # DuckDB rounds half away from zero when it rescales
    if not d:
        d = d.copy_abs()  # a DECIMAL has no negative zero
    return format(d, "f")


def _date_text(v) -> str:
    if isinstance(v, dt.datetime):
        v = v.date()  # CAST(TIMESTAMP AS DATE) drops the time
    return v.isoformat() if isinstance(v, dt.date) else str(v)


def _datetime_text(v) -> str:
    if not isinstance(v, dt.datetime):
        if not isinstance(v, dt.date):
            return str(v)
        v = dt.datetime(v.year, v.month, v.day)  # a date casts to midnight
    text = v.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    if v.microsecond:
        text += (".%06d" % v.microsecond).rstrip("0")  # DuckDB drops the fraction's trailing zeros
    return text


_TEXT_FORMS: dict[str, Callable[[Any], str]] = {
    "string": str,
    "integer": lambda v: str(int(v)),
    "decimal": _decimal_text,
    "date": _date_text,
    "datetime": _datetime_text,
    "boolean": lambda v: "true" if v else "false",
}
_TEXT_SQL = {
    "string": "{c}",
    "integer": "CAST({c} AS VARCHAR)",
    # Through the warehouse type first, so a DECIMAL(38,10) or TIMESTAMP_NS expression prints as stored.
    "decimal": "CAST(CAST({c} AS %s) AS VARCHAR)" % _DECIMAL_SQL,
    "date": "CAST(CAST({c} AS DATE) AS VARCHAR)",
    "datetime": "CAST(CAST({c} AS TIMESTAMP) AS VARCHAR)",
    "boolean": "CAST(CAST({c} AS BOOLEAN) AS VARCHAR)",
}


def text_form(value: Any, data_type: str) -> str | None:
    """The text a value of an item of this type is masked on (DuckDB's CAST(x AS VARCHAR))."""
    return None if value is None else _TEXT_FORMS[data_type](value)


def text_sql(column_sql: str, data_type: str) -> str:
    return _TEXT_SQL[data_type].format(c=column_sql)


# ---------------------------------------------------------------------------------------------------------
# The Python form
# ---------------------------------------------------------------------------------------------------------

# One pattern text for both forms: Python's re and DuckDB's RE2 agree on these (leftmost-first alternation,
# lazy .*?, (?s:) so a newline is an ordinary character).
_TOWN_RE = "^(?s:(.{2}.*?(?:街道办事处|街道|乡|镇)))"
# The county fallback reads a pair (the character before the marker, the marker) so that the marker sits at
# the third character or later and 区 right after 小 or 社 (小区 an estate, 社区 a community: below the town)
# does not count; RE2 has no look-behind. Each pair ends one character after where it starts, so the first
# pair found is the shortest prefix, as with the town pattern.
_COUNTY_RE = "^(?s:(.+?(?:[^小社]区|.[县市])))"
_YEAR_RE = "^ *([0-9]{4})"
_DATE_RE = "^ *([0-9]{4}-[0-9]{2}-[0-9]{2})"
_town_match = re.compile(_TOWN_RE).match
_county_match = re.compile(_COUNTY_RE).match
_year_match = re.compile(_YEAR_RE).match
_date_match = re.compile(_DATE_RE).match


def _keep(first: int, last: int) -> Callable[[str], str]:
    total = first + last

    def keep(s: str) -> str:
        n = len(s)
        if n <= total:
            return "*" * n
        return s[:first] + "*" * (n - total) + s[n - last:]  # s[n - 0:] is "", where s[-0:] would be all

    return keep


def _id_number(s: str, keep15=_keep(6, 3), keep=_keep(6, 4)) -> str:
    return keep15(s) if len(s) == 15 else keep(s)


def _bank_card(s: str) -> str:
    d = s.replace(" ", "")
    n = len(d)
    if n <= 8:
        stars = "*" * n
        return " ".join(stars[i:i + 4] for i in range(0, n, 4))
    m = n - 8
    middle = "**** " * (m // 4) + ("*" * (m % 4) + " " if m % 4 else "")
    return d[:4] + " " + middle + d[-4:]


def _town(s: str) -> str | None:
    m = _town_match(s) or _county_match(s)
    return m[1] if m else None


def _year_of_text(s: str) -> int | None:
    m = _year_match(s)
    return (int(m[1]) or None) if m else None  # "0000" is no year


def _ymd_of_text(s: str) -> int | None:
    """YYYYMMDD of a valid date a string starts with, else None."""
    m = _date_match(s)
    if not m:
        return None
    try:
        d = dt.date.fromisoformat(m[1])  # refuses 1990-02-30 and year 0000, as DuckDB's TRY_CAST + check do
    except ValueError:
        return None
    return d.year * 10000 + d.month * 100 + d.day


def _key_lookup(keys) -> Callable[[str], bytes]:
    if keys is None:
        return hash_key
    if isinstance(keys, Mapping):
        return keys.__getitem__
    return keys


def _hmac_prototype(key: bytes):
    """An HMAC-SM3 state with the key already absorbed: copying it per value skips the key schedule
    (the same digest as crypto.hmac_sm3)."""
    def sm3(data=b""):
        h = crypto.new_sm3()
        if data:
            h.update(data)
        return h

    return hmac.new(key, digestmod=sm3)


def hash_key(domain: str) -> bytes:
    """The hash-mask key of one domain (usually one consumer): derived, so nothing is stored, and
    unrelated between domains."""
    return crypto.derive_key("mask-hash:" + domain)


def _today(today) -> dt.date:
    if today is None:
        return dt.date.today()
    if isinstance(today, dt.datetime):
        return today.date()
    if isinstance(today, dt.date):
        return today
    raise MaskError(_("The reference date must be a date."))


def compile_py(spec: Any, data_type: str, key_lookup: Mapping[str, bytes] | Callable[[str], bytes] | None = None,
               key_id: str | None = None, today: dt.date | None = None) -> Callable[[Any], Any]:
    """A closure masking one value of an item of this type. Everything that can be is decided here, once:
    the per-value work is the masking itself. For "hash", the key is ``key_lookup(key_id)`` (a mapping or a
    callable; by default ``hash_key``, the key id being the domain); for "age_band", ``today`` is the
    reference date (default: today)."""
    spec = validate(spec, data_type)
    kind = spec["kind"]
    if kind == "clear":
        return lambda v: v
    if kind == "null":
        return lambda v: None

    if kind in ("year", "age_band"):
        return _compile_dates(spec, data_type, today)

    if kind == "keep":
        fn = _keep(spec["first"], spec["last"])
    elif kind == "name":
        fn = _keep(1, 0)
    elif kind == "mobile":
        fn = _keep(3, 4)
    elif kind == "id_number":
        fn = _id_number
    elif kind == "bank_card":
        fn = _bank_card
    elif kind == "town":
        fn = _town
    else:  # hash
        if key_id is None:
            raise MaskError(_("A hash mask needs the consumer's key."))
        proto = _hmac_prototype(_key_lookup(key_lookup)(key_id))

        def fn(s: str, proto=proto) -> str:
            h = proto.copy()
            h.update(s.encode())
            return h.hexdigest()

    if data_type == "string":
        def apply(v):
            if v is None:
                return None
            return fn(v if v.__class__ is str else str(v))
    else:
        text = _TEXT_FORMS[data_type]

        def apply(v):
            return None if v is None else fn(text(v))
    return apply


def _compile_dates(spec: dict, data_type: str, today) -> Callable[[Any], Any]:
    if spec["kind"] == "year":
        def year(v):
            if v is None:
                return None
            if isinstance(v, dt.date):
                return v.year
            return _year_of_text(v if v.__class__ is str else str(v))
        return year

    width = spec["width"]
    ref = _today(today)
    ref_ymd = ref.year * 10000 + ref.month * 100 + ref.day

    def band(age):
        if age is None or age < 0:
            return None
        low = age // width * width
        return "%d-%d" % (low, low + width - 1)

    if data_type == "integer":
        return lambda v: None if v is None else band(int(v))

    def age_band(v):
        if v is None:
            return None
        if isinstance(v, dt.date):
            ymd = v.year * 10000 + v.month * 100 + v.day
        else:
            ymd = _ymd_of_text(v if v.__class__ is str else str(v))
            if ymd is None:
                return None
        # Completed years: the YYYYMMDD difference over 10000 (negative when born after the reference date).
        diff = ref_ymd - ymd
        return band(diff // 10000) if diff >= 0 else None

    return age_band


# ---------------------------------------------------------------------------------------------------------
# The SQL form (DuckDB)
# ---------------------------------------------------------------------------------------------------------

def _keep_sql(t: str, first: int, last: int) -> str:
    # || (not concat) so that NULL stays NULL; substring counts code points like Python slicing.
    n = f"length({t})"
    return (f"CASE WHEN {n} <= {first + last} THEN repeat('*', {n}) "
            f"ELSE substring({t}, 1, {first}) || repeat('*', {n} - {first + last}) || "
            f"substring({t}, {n} + {1 - last}, {last}) END")


def _bank_card_sql(t: str) -> str:
    d = f"replace({t}, ' ', '')"
    n = f"length({d})"
    m = f"({n} - 8)"
    return (f"CASE WHEN {n} <= 8 THEN rtrim(repeat('**** ', {n} // 4) || repeat('*', {n} % 4)) "
            f"ELSE substring({d}, 1, 4) || ' ' || repeat('**** ', {m} // 4) || "
            f"CASE WHEN {m} % 4 > 0 THEN repeat('*', {m} % 4) || ' ' ELSE '' END || "
            f"substring({d}, {n} - 3, 4) END")


def _band_sql(age: str, width: int) -> str:
    low = f"({age}) // {width} * {width}"
    return (f"CASE WHEN ({age}) >= 0 THEN CAST({low} AS VARCHAR) || '-' || "
            f"CAST({low} + {width - 1} AS VARCHAR) END")


def sql(spec: Any, column_sql: str, data_type: str, key_id: str | None = None, today: dt.date | None = None) -> str:
    """The DuckDB expression masking ``column_sql`` (a trusted, already quoted SQL expression) of an item
    of this type; equal to compile_py's result for every value. "hash" needs ``key_id`` and a connection
    prepared with ``register``; "age_band" embeds ``today`` (default: today) as YYYYMMDD."""
    spec = validate(spec, data_type)
    kind = spec["kind"]
    c = column_sql
    if kind == "clear":
        return c
    if kind == "null":
        return f"CAST(NULL AS {_SQL_TYPES[data_type]})"
    if kind == "year":
        if data_type == "string":
            return f"CAST(NULLIF(NULLIF(regexp_extract({c}, {quote_literal(_YEAR_RE)}, 1), ''), '0000') AS BIGINT)"
        return f"CAST(year({c}) AS BIGINT)"
    if kind == "age_band":
        width = spec["width"]
        if data_type == "integer":
            return _band_sql(f"CAST({c} AS HUGEINT)", width)  # HUGEINT: no overflow near BIGINT's end
        ref = _today(today)
        ref_ymd = ref.year * 10000 + ref.month * 100 + ref.day
        if data_type == "string":
            x = f"regexp_extract({c}, {quote_literal(_DATE_RE)}, 1)"
            # TRY_CAST refuses 1990-02-30 but reads 0000-01-01 as 1 BC; Python has no year 0, so neither do we.
            ymd = (f"CASE WHEN TRY_CAST(NULLIF({x}, '') AS DATE) IS NOT NULL AND {x} >= '0001' "
                   f"THEN CAST(replace({x}, '-', '') AS BIGINT) END")
        else:
            ymd = f"(year({c}) * 10000 + month({c}) * 100 + day({c}))"
        diff = f"{ref_ymd} - {ymd}"
        # DuckDB's // truncates towards zero, so test the difference, not the quotient, for "born later".
        return f"CASE WHEN {diff} >= 0 THEN {_band_sql(f'({diff}) // 10000', width)} END"

    t = text_sql(c, data_type)
    if kind == "keep":
        return _keep_sql(t, spec["first"], spec["last"])
    if kind == "name":
        return _keep_sql(t, 1, 0)
    if kind == "mobile":
        return _keep_sql(t, 3, 4)
    if kind == "id_number":
        return f"CASE WHEN length({t}) = 15 THEN {_keep_sql(t, 6, 3)} ELSE {_keep_sql(t, 6, 4)} END"
    if kind == "bank_card":
        return _bank_card_sql(t)
    if kind == "town":
        return (f"coalesce(NULLIF(regexp_extract({t}, {quote_literal(_TOWN_RE)}, 1), ''), "
                f"NULLIF(regexp_extract({t}, {quote_literal(_COUNTY_RE)}, 1), ''))")
    # hash
    if key_id is None:
        raise MaskError(_("A hash mask needs the consumer's key."))
    return f"{HASH_FUNCTION}({quote_literal(key_id)}, {t})"


def register(con, keys: Mapping[str, bytes] | Callable[[str], bytes] | None = None) -> None:
    """Install ``sz_mask_hash(key_id VARCHAR, value VARCHAR) -> VARCHAR`` on a DuckDB connection, with the
    keys held here, never in SQL: ``keys`` maps a key id to key bytes (a mapping or a callable; by default
    ``hash_key``, the key id being the consumer's domain). Vectorised over Arrow batches; replaces an
    earlier registration on the same connection."""
    import duckdb
    import pyarrow as pa
    from duckdb.sqltypes import VARCHAR

    lookup = _key_lookup(keys)
    prototypes: dict[str, Any] = {}  # key id -> HMAC state with the key absorbed

    def prototype(key_id: str):
        proto = prototypes.get(key_id)
        if proto is None:
            try:
                key = lookup(key_id)
            except KeyError:
                raise MaskError(_('No hash key "%(id)s" on this connection.') % {"id": key_id}) from None
            proto = prototypes[key_id] = _hmac_prototype(key)
        return proto

    def mask_hash(key_ids, values):
        out = []
        append = out.append
        for key_id, value in zip(key_ids.to_pylist(), values.to_pylist()):
            if key_id is None or value is None:
                append(None)
                continue
            h = prototype(key_id).copy()
            h.update(value.encode())
            append(h.hexdigest())
        return pa.array(out, type=pa.string())

    try:
        con.remove_function(HASH_FUNCTION)
    except duckdb.InvalidInputException:
        pass  # not registered yet
    con.create_function(HASH_FUNCTION, mask_hash, [VARCHAR, VARCHAR], VARCHAR, type="arrow", side_effects=False)
