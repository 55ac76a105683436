"""One load, from a staged source to one Iceberg snapshot, vectorised in DuckDB.

    staged (every source column as text, `_row` = where a person finds the record in the source)
      -> typed     one column per data item, converted; conversion, length and encoding failures flagged
      -> flagged   every quality check as a boolean column (TRUE = the row fails it)
      -> good rows: Parquet files in the table's folder -> one snapshot (append, upsert or replace)
      -> bad rows:  the quarantine file, with the source values and every reason

Nothing is committed until the last step, so an error, a rejection or a kill at any point leaves the
table as it was. Services (ingest.services) decide who may load and record the outcome; this module only
computes.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from django.utils.translation import gettext as _

from shuzheng.catalog.models import DataType
from shuzheng.core.errors import FieldError, ValidationFailed
from shuzheng.ingest.models import Mode
from shuzheng.quality.checks import Check, CompiledCheck, compile_check, count_change_problem
from shuzheng.security import discovery, fieldcrypt
from shuzheng.warehouse import lake
from shuzheng.warehouse.lake import quote_ident as q
from shuzheng.warehouse.lake import quote_literal as lit

DATE_FORMATS = ["%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y.%m.%d", "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S"]
DATETIME_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y/%m/%d %H:%M:%S",
                    "%Y%m%d%H%M%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
TRUE_WORDS = ("true", "1", "y", "yes", "是", "t")
FALSE_WORDS = ("false", "0", "n", "no", "否", "f")
# Bytes that could not be decoded become U+FFFD; 锟斤拷 is what UTF-8's U+FFFD looks like read as GBK.
DAMAGE_MARKS = ("\ufffd", "锟斤拷")
CYCLE_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "semiannual": 183, "yearly": 366}


@dataclass
class Outcome:
    rows_read: int = 0
    loaded: int = 0
    quarantined: int = 0
    unreadable: int = 0
    warned: int = 0
    rows_after: int | None = None
    snapshot_id: int | None = None
    parent_snapshot_id: int | None = None
    rejected_reason: str = ""
    findings: list = field(default_factory=list)
    dimension_failures: dict = field(default_factory=dict)
    completeness: float = 1.0
    warnings: list = field(default_factory=list)
    checks: int = 0
    timings: dict = field(default_factory=dict)  # seconds per phase, for the lineage and the benchmark
    mapping: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-（）()]", "", name or "").lower()


def resolve_mapping(items, columns: list[str], requested: dict | None) -> tuple[dict, list[str]]:
    """data item -> source column. Explicit entries first, then the same name (ignoring spaces, case and
    brackets). A key or mandatory item without a column is an error naming it; an optional one is left
    empty with a warning."""
    requested = {k: v for k, v in (requested or {}).items() if v}
    names = {item.name for item in items}
    errors = [FieldError(f"mapping.{k}", _("No data item %(item)s in this resource.") % {"item": k})
              for k in requested if k not in names]
    errors += [FieldError(f"mapping.{k}", _("The source has no column %(column)s.") % {"column": v})
               for k, v in requested.items() if k in names and v not in columns]
    by_normal = {}
    for column in columns:
        by_normal.setdefault(_normal(column), column)
    mapping, warnings = {}, []
    for item in items:
        column = requested.get(item.name) or (item.name if item.name in columns else by_normal.get(_normal(item.name)))
        if column in columns:
            mapping[item.name] = column
        elif item.name not in requested:
            if item.is_key or not item.nullable:
                errors.append(FieldError(f"mapping.{item.name}", _(
                    "No column for %(item)s, which is required. The source's columns: %(columns)s.")
                    % {"item": item.name, "columns": "、".join(columns[:30])}))
            else:
                warnings.append(_("No column for %(item)s: left empty.") % {"item": item.name})
    if errors:
        raise ValidationFailed(_("The source's columns do not match the resource's data items."), errors)
    return mapping, warnings


def _convert(item, raw: str) -> tuple[str, str | None, str]:
    """(typed SQL, failure SQL or None, failure message) for one item read from raw text column `raw`."""
    v = f"NULLIF(TRIM({raw}), '')"
    kind = item.data_type
    if kind == DataType.STRING:
        return v, None, ""
    if kind == DataType.INTEGER:
        expr = f"TRY_CAST(REPLACE({v}, ',', '') AS BIGINT)"
        return expr, f"({v} IS NOT NULL AND {expr} IS NULL)", _("Not a whole number.")
    if kind == DataType.DECIMAL:
        expr = f"TRY_CAST(REPLACE({v}, ',', '') AS {lake.DUCK_TYPES[kind]})"
        # More decimals than the column keeps would be rounded: refuse rather than change the value.
        exact = f"TRY_CAST(REPLACE({v}, ',', '') AS DECIMAL(38,10))"
        return expr, f"({v} IS NOT NULL AND ({expr} IS NULL OR {exact} IS DISTINCT FROM {expr}))", \
            _("Not a number with at most %(p)d digits and %(s)d decimals.") % {"p": lake.DECIMAL[0], "s": lake.DECIMAL[1]}
    if kind in (DataType.DATE, DataType.DATETIME):
        formats = DATE_FORMATS if kind == DataType.DATE else DATETIME_FORMATS
        parsed = f"TRY_STRPTIME({v}, [{', '.join(lit(f) for f in formats)}])"
        expr = f"CAST({parsed} AS DATE)" if kind == DataType.DATE else parsed
        return expr, f"({v} IS NOT NULL AND {parsed} IS NULL)", \
            (_("Not a valid date.") if kind == DataType.DATE else _("Not a valid date and time."))
    if kind == DataType.BOOLEAN:
        words = lambda ws: ", ".join(lit(w) for w in ws)  # noqa: E731
        expr = (f"CASE WHEN LOWER({v}) IN ({words(TRUE_WORDS)}) THEN TRUE "
                f"WHEN LOWER({v}) IN ({words(FALSE_WORDS)}) THEN FALSE END")
        return expr, f"({v} IS NOT NULL AND {expr} IS NULL)", _("Not yes or no.")
    raise ValueError(kind)


def builtin_checks(items, mapping: dict) -> tuple[list[str], list[CompiledCheck]]:
    """Column expressions of the typed table and the checks every load makes whatever its rules:
    conversion to the item's type, length, encoding damage."""
    columns, checks = [], []
    for item in items:
        raw = mapping.get(item.name)
        if raw is None:
            columns.append(f"CAST(NULL AS {lake.DUCK_TYPES[item.data_type]}) AS {q(item.name)}")
            continue
        expr, failure, message = _convert(item, q(raw))
        columns.append(f"{expr} AS {q(item.name)}")
        if failure:
            checks.append(CompiledCheck("builtin", "type", f"type.{item.data_type}", item.name, failure, message,
                                        True, "validity"))
        if item.data_type == DataType.STRING and item.length:
            checks.append(CompiledCheck(
                "builtin", "length", "length", item.name, f"LENGTH(TRIM({q(raw)})) > {int(item.length)}",
                _("Longer than %(n)d characters.") % {"n": item.length}, True, "validity"))
        marks = " OR ".join(f"CONTAINS({q(raw)}, {lit(m)})" for m in DAMAGE_MARKS)
        checks.append(CompiledCheck("builtin", "encoding", "encoding", item.name, f"({marks})",
                                    _("Damaged characters: the text was saved or sent in the wrong encoding."),
                                    True, "validity"))
    return columns, checks


@dataclass
class Plan:
    """What one load applies: the checks (compiled) and the rules they came from, for the lineage."""
    checks: list[Check]
    refs: dict[str, tuple] = field(default_factory=dict)   # resource code -> (iceberg table, items)


def _flag(i: int) -> str:
    return f"__f{i}"


# Sources larger than this (or of unknown size: pulls) are staged in a DuckDB file rather than in memory,
# so that a file far larger than memory loads in bounded memory; smaller ones stay in memory, which is
# about twice as fast to stage.
IN_MEMORY_BYTES = int(os.environ.get("SHUZHENG_LOAD_IN_MEMORY_BYTES", 512 << 20))


def execute(*, load_id, table, items, mode: str, stage: Callable, requested_mapping: dict | None,
            plan: Plan, max_failure_share: float, max_count_change: float | None,
            source_bytes: int | None = None, progress: Callable[[str], None] = lambda phase: None,
            cipher=None) -> Outcome:
    """Runs one load against Iceberg table `table` (already created for `items`). Returns the outcome;
    commits a snapshot only when the load is accepted. `cipher` (security.fieldcrypt) seals the encrypted
    items as they are written and opens the current rows that checks and upserts compare with."""
    out = Outcome()
    clock = {"phase": None, "at": time.perf_counter()}

    def phase(name: str) -> None:
        now = time.perf_counter()
        if clock["phase"]:
            out.timings[clock["phase"]] = round(now - clock["at"], 3)
        clock["phase"], clock["at"] = name, now
        if name:
            progress(name)

    scratch = lake.scratch_path(load_id)
    con = lake.duck(None if source_bytes is not None and source_bytes <= IN_MEMORY_BYTES else scratch)
    parent = table.current_snapshot()
    out.parent_snapshot_id = parent.snapshot_id if parent else None
    try:
        phase("staging")
        staged = stage(con)
        out.lineage = staged.lineage
        out.warnings += list(staged.warnings)
        out.unreadable = staged.rejected
        out.mapping, mapping_warnings = resolve_mapping(items, staged.columns, requested_mapping)
        out.warnings += mapping_warnings

        phase("checking")
        typed_columns, compiled = builtin_checks(items, out.mapping)
        # The built-in checks read the source text, so they are computed with the conversion.
        typed_columns += [f"COALESCE({c.sql}, FALSE) AS {_flag(i)}" for i, c in enumerate(compiled)]
        builtins = len(compiled)
        duck_types = {item.name: lake.DUCK_TYPES[item.data_type] for item in items}
        lake.view(con, "current", table, items, parent, cipher=cipher)
        refs = {}
        for code, (ref_table, ref_items, ref_cipher) in plan.refs.items():
            name = f"ref_{len(refs)}"
            # Reference checks compare with the referenced table's values, sealed ones opened inside the load:
            # only pass/fail flags on the loading department's own rows come out.
            lake.view(con, name, ref_table, ref_items, ref_table.current_snapshot() if ref_table else None,
                      cipher=ref_cipher)
            refs[code] = name
        existing = "current" if mode == Mode.APPEND else None
        for check in plan.checks:
            try:
                compiled += compile_check(check, columns=duck_types, refs=refs, existing=existing)
            except ValueError as exc:  # a rule that no longer fits the items (renamed in a new version)
                raise ValidationFailed.of("rules", _("Rule %(rule)s cannot be applied: %(error)s")
                                          % {"rule": check.rule_id, "error": exc}) from exc

        # One pass over the staged rows: convert, check, judge; `judged` is the only table materialised
        # (`typed` is a view, which checks that compare rows with each other read again).
        flags = "".join(f", COALESCE({c.sql}, FALSE) AS {_flag(i)}" for i, c in enumerate(compiled) if i >= builtins)
        blocking = " OR ".join(_flag(i) for i, c in enumerate(compiled) if c.blocking) or "FALSE"
        warning = " OR ".join(_flag(i) for i, c in enumerate(compiled) if not c.blocking) or "FALSE"
        con.execute(f"CREATE TEMP VIEW typed AS SELECT _row, {', '.join(typed_columns)} FROM {q(staged.relation)}")
        con.execute(f"""CREATE TABLE judged AS SELECT *, ({blocking}) AS __bad, ({warning}) AS __warn
                        FROM (SELECT *{flags} FROM typed) AS flagged""")
        _measure(con, out, compiled, items)
        discovery.record(con, load_id, items)  # what the data shows about the items (S1); never fails the load
        out.checks = len(compiled)

        share = (out.quarantined + out.unreadable) / max(1, out.rows_read)
        if share > max_failure_share:
            out.rejected_reason = _(
                "%(share).1f%% of the rows fail a blocking rule, more than the %(limit).1f%% this resource "
                "accepts; nothing was loaded.") % {"share": share * 100, "limit": max_failure_share * 100}

        phase("quarantine")
        if out.quarantined or out.unreadable:
            _write_quarantine(con, load_id, staged, compiled)

        if out.rejected_reason:
            return out
        phase("writing")
        folder = lake.load_dir(table, load_id)
        try:
            files = _write_data(con, table, items, mode, folder, cipher)
            previous_rows = parent.summary.get("total-records") if parent else None
            new_rows = con.execute("SELECT count(*) FROM new_rows").fetchall()[0][0]
            replace = mode != Mode.APPEND
            out.rows_after = new_rows if replace else int(previous_rows or 0) + new_rows
            if mode == Mode.REPLACE and max_count_change is not None:
                problem = count_change_problem(int(previous_rows) if previous_rows else None, new_rows, max_count_change)
                if problem:
                    out.rejected_reason = problem
                    lake.discard_files(table.location(), load_id)
                    return out
            fault_point("SHUZHENG_FAULT_PAUSE_BEFORE_COMMIT", folder)
            phase("committing")
            properties = {"shuzheng.load": str(load_id), "shuzheng.mode": mode}
            if cipher is not None:
                properties[fieldcrypt.KIDS_PROPERTY] = fieldcrypt.kids_after(parent, cipher.active_kid, replace)
            out.snapshot_id = lake.commit(table, files, replace=replace, properties=properties)
            phase("")
        except BaseException:
            lake.discard_files(table.location(), load_id)
            raise
        return out
    finally:
        con.close()
        for leftover in scratch.parent.glob(scratch.name + "*"):
            leftover.unlink(missing_ok=True)


def fault_point(name: str, folder: Path) -> None:
    """Fault-injection points for the atomicity tests (documented in docs/architecture.md): pause with the
    files written but not committed, or fail there (loads, and key rotations' rewrites)."""
    value = os.environ.get(name)
    if not value:
        return
    (folder / ".about-to-commit").touch()
    if value == "fail":
        raise RuntimeError("injected failure before commit")
    time.sleep(float(value))


def _measure(con, out: Outcome, compiled: list[CompiledCheck], items) -> None:
    counts = "".join(f", count_if({_flag(i)})" for i in range(len(compiled)))
    present = "".join(f", count({q(item.name)})" for item in items)
    dims = sorted({c.dimension for c in compiled})
    dim_sql = "".join(
        f", count_if({' OR '.join(_flag(i) for i, c in enumerate(compiled) if c.dimension == d)})" for d in dims)
    row = con.execute(f"SELECT count(*), count_if(__bad), count_if(__warn AND NOT __bad){present}{counts}{dim_sql} "
                      "FROM judged").fetchall()[0]
    total, bad, warned = row[0], row[1], row[2]
    filled = sum(row[3:3 + len(items)])
    flag_counts = row[3 + len(items):3 + len(items) + len(compiled)]
    out.dimension_failures = dict(zip(dims, row[3 + len(items) + len(compiled):]))
    failing = [i for i, n in enumerate(flag_counts) if n]
    samples = {}
    if failing:
        # The first source rows of each finding, for people to look at: a small query per failing check.
        union = " UNION ALL ".join(
            f"(SELECT {i} AS f, _row FROM judged WHERE {_flag(i)} ORDER BY _row LIMIT 5)" for i in failing)
        for f, r in con.execute(f"SELECT f, list(_row ORDER BY _row) FROM ({union}) GROUP BY f").fetchall():
            samples[f] = r
    for i in failing:
        c = compiled[i]
        out.findings.append({"rule": c.rule_id, "kind": str(c.kind), "code": c.code, "item": c.item,
                             "message": c.message, "blocking": c.blocking, "dimension": c.dimension,
                             "count": flag_counts[i], "rows": samples.get(i, [])})
    out.findings.sort(key=lambda f: (-f["count"], f["item"], f["code"]))
    out.rows_read = total + out.unreadable
    out.quarantined = bad
    out.loaded = total - bad
    out.warned = warned
    out.completeness = filled / (total * len(items)) if total and items else 1.0


def quarantine_dir() -> Path:
    path = lake.root() / "_quarantine"
    path.mkdir(parents=True, exist_ok=True)
    return path


def quarantine_path(load_id) -> Path:
    return quarantine_dir() / f"{load_id}.parquet"


def _write_quarantine(con, load_id, staged, compiled: list[CompiledCheck]) -> Path:
    """The source values of every refused row and of every unreadable record, each with all its reasons
    (warnings included, so a department fixes everything at once)."""
    reasons = ", ".join(
        f"CASE WHEN {_flag(i)} THEN {{'item': {lit(c.item)}, 'code': {lit(c.code)}, 'message': {lit(c.message)}, "
        f"'blocking': {'TRUE' if c.blocking else 'FALSE'}}} END" for i, c in enumerate(compiled))
    raw = ", ".join(f"s.{q(col)}" for col in staged.columns)
    path = quarantine_path(load_id)
    reason_type = "STRUCT(item VARCHAR, code VARCHAR, message VARCHAR, blocking BOOLEAN)[]"
    con.execute("CREATE TEMP TABLE unreadable (_row BIGINT, reason VARCHAR, raw VARCHAR)")
    if staged.rejects:
        con.executemany("INSERT INTO unreadable VALUES (?, ?, ?)",
                        [(r["row"], r["reason"], r.get("raw", "")) for r in staged.rejects])
    nulls = ", ".join(f"NULL AS {q(col)}" for col in staged.columns)
    con.execute(f"""COPY (
        SELECT j._row, {raw}, list_filter([{reasons}], lambda x: x IS NOT NULL)::{reason_type} AS __reasons, NULL AS __raw
          FROM judged j JOIN {q(staged.relation)} s USING (_row) WHERE j.__bad
        UNION ALL
        SELECT _row, {nulls}, [{{'item': '', 'code': 'unreadable', 'message': reason, 'blocking': TRUE}}]::{reason_type},
               raw FROM unreadable
        ORDER BY _row) TO {lit(str(path))} (FORMAT parquet)""")
    return path


def _write_data(con, table, items, mode: str, folder: Path, cipher=None) -> list[Path]:
    """Writes the rows the new snapshot holds (this load's good rows; for upsert also the current rows
    whose key the load does not replace) as Parquet with the Iceberg field ids; encrypted items as tokens
    beside their blind index."""
    cols = ", ".join(q(item.name) for item in items)
    good = f"SELECT {cols} FROM judged WHERE NOT __bad"
    if mode == Mode.UPSERT:
        keys = [item.name for item in items if item.is_key]
        on = " AND ".join(f"c.{q(k)} = g.{q(k)}" for k in keys)
        keep = f"SELECT {', '.join('c.' + q(i.name) for i in items)} FROM current c ANTI JOIN ({good}) g ON {on}"
        con.execute(f"CREATE TEMP VIEW new_rows AS {good}")
        source = f"{keep} UNION ALL {good}"
        con.execute(f"CREATE TEMP VIEW written AS {source}")
    else:
        con.execute(f"CREATE TEMP VIEW new_rows AS {good}")
        con.execute(f"CREATE TEMP VIEW written AS {good}")
    ids = lake.field_ids(table)
    names = [i.name for i in items]
    select = "*"
    if cipher is not None:
        cipher.register(con)
        select, names = cipher.sealed_select(names)
    field_ids = "{" + ", ".join(f"{lit(name)}: {ids[name]}" for name in names) + "}"
    path = folder / "part-0.parquet"
    con.execute(f"COPY (SELECT {select} FROM written) TO {lit(str(path))} (FORMAT parquet, FIELD_IDS {field_ids})")
    if mode == Mode.UPSERT:
        # new_rows for the count check means the rows of the table after the load.
        con.execute("CREATE OR REPLACE TEMP VIEW new_rows AS SELECT * FROM written")
    return [path]


def timeliness(cycle: str, previous_at: dt.datetime | None, now: dt.datetime) -> float:
    """1.0 when the data came within its update cycle (10% grace), falling as the gap grows."""
    days = CYCLE_DAYS.get(cycle)
    if not days or previous_at is None:
        return 1.0
    gap = (now - previous_at).total_seconds() / 86400
    return 1.0 if gap <= days * 1.1 else max(0.0, days / gap)


def scores(out: Outcome, timely: float) -> dict:
    total = max(1, out.rows_read)
    result = {"completeness": out.completeness,
              "validity": 1 - (out.dimension_failures.get("validity", 0) + out.unreadable) / total,
              "uniqueness": 1 - out.dimension_failures.get("uniqueness", 0) / total,
              "consistency": 1 - out.dimension_failures.get("consistency", 0) / total,
              "timeliness": timely}
    result = {k: round(max(0.0, v) * 100, 1) for k, v in result.items()}
    result["overall"] = round(sum(result.values()) / len(result), 1)
    return result

