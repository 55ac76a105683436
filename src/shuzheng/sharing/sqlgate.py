"""The SQL entry of the data-sharing gateway: one consumer SELECT in, a governed DuckDB query out.

The model is the one Hive and Trino apply with Apache Ranger row-filter and column-mask policies.
A consumer application never reads a resource itself, only the view of it its grant defines:

1. The text is bounded (length, nesting) and parsed with SQLGlot, DuckDB dialect.
2. The tree is checked against allowlists: exactly one query; query shapes (SELECT, non-recursive
   WITH, UNION/INTERSECT/EXCEPT, subqueries, joins, GROUP BY/HAVING/QUALIFY, ORDER BY, LIMIT/OFFSET,
   windows); operators, literals and casts to plain types; and the functions in `FUNCTIONS`.
   Anything else is refused with `SqlRefused`, never silently dropped. Every table reference must
   be a CTE of the query or a name `resolve()` grants; every column reference must resolve to a
   granted column, a CTE or subquery output, or a SELECT alias, so a consumer asking for a column
   it was not granted is told which one.
3. Each granted table reference becomes
   `(SELECT (<mask>) AS "<col>", ... FROM <source> WHERE (<row filter>)) AS "<alias>"`. The rest
   of the query binds unchanged, yet whatever it does (WHERE, JOIN, GROUP BY, ORDER BY, windows on
   a masked column) it only ever sees masked values of filtered rows: the masks and the filter are
   applied below everything the consumer wrote. CTEs are renamed to private names so that a
   consumer's CTE cannot shadow a relation the trusted source SQL names.
4. The SQL run is generated from the checked tree, never the consumer's text: every identifier
   quoted, comments dropped, so DuckDB parses exactly what was checked (no parser differential).
5. `run()` executes on a connection `sandbox()` locked down (no file system outside the warehouse
   folders, no network, no extensions, configuration locked) with a row cap and a timeout.

The sandbox is the second wall, not the first: DuckDB lets COPY write inside an allowed directory,
so the allowlist must refuse it. Choices: random(), uuid(), now() and nextval() are refused (a
shared query should give the same answer when replayed from the audit trail; sequences are state);
lambdas, list/struct/map constructors, subscripts, COLLATE, PIVOT/UNPIVOT, SAMPLE, LATERAL/UNNEST,
time travel and placeholders are refused because sharing does not need them. ASOF, POSITIONAL,
NATURAL, SEMI and ANTI joins are allowed: they only combine rows of the already masked and
filtered views. A failed conversion is reported without DuckDB's text, which quotes the value.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable

import duckdb
from django.utils.translation import gettext as _
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError, UnsupportedError
from sqlglot.tokens import TokenType

from shuzheng.core.sql import quote_ident, quote_literal

MAX_NESTING = 24  # parentheses/CASE levels; SQLGlot's recursive parser needs ~30 frames a level
MAX_TREE_DEPTH = 400  # DuckDB's own max_expression_depth is 1000
_CTE_PREFIX = "__sqlgate_cte_"


@dataclass(frozen=True)
class TableScope:
    """What one consumer may see of one resource: built by the caller from the grant (trusted)."""

    name: str  # the name the consumer uses, "schema.table" in lower case
    source_sql: str  # trusted SQL relation to select from
    columns: dict[str, str]  # granted column -> trusted SQL expression over the source (the mask)
    row_filter: str | None = None  # trusted SQL boolean over the source columns


class SqlRefused(Exception):
    """The query is outside what the gateway runs. `message` is for the consumer; `fragment` is the
    offending SQL text when there is one."""

    def __init__(self, message: str, fragment: str | None = None):
        super().__init__(message)
        self.message = message
        self.fragment = fragment


class SqlTimeout(SqlRefused):
    """The query ran past its time limit and was interrupted."""


@dataclass
class Rewritten:
    sql: str  # DuckDB SQL to execute
    tables: list[str] = field(default_factory=list)  # scope names referenced
    columns: dict[str, list[str]] = field(default_factory=dict)  # scope name -> granted columns read


# --- allowlists -------------------------------------------------------------------------------

# Scalar, aggregate and window functions, by the SQLGlot class DuckDB's spellings parse into
# (e.g. substr/substring -> Substring, strpos/instr/position -> StrPosition, string_agg -> GroupConcat).
FUNCTIONS: frozenset[type] = frozenset({
    # text
    exp.Lower, exp.Upper, exp.Length, exp.Substring, exp.Trim, exp.Replace, exp.Concat, exp.ConcatWs,
    exp.Left, exp.Right, exp.StrPosition, exp.Pad, exp.Reverse, exp.StartsWith, exp.EndsWith,
    exp.Contains, exp.SplitPart, exp.Translate, exp.RegexpLike, exp.RegexpFullMatch, exp.RegexpExtract,
    exp.RegexpReplace,  # RE2 in DuckDB: linear time, no catastrophic backtracking
    # nulls and conditions
    exp.Coalesce, exp.Nullif, exp.If, exp.Case,
    # numbers
    exp.Abs, exp.Round, exp.Floor, exp.Ceil, exp.Trunc, exp.Sign, exp.Sqrt, exp.Pow, exp.Mod, exp.Ln,
    exp.Log, exp.Exp, exp.Least, exp.Greatest,
    # dates and times (strftime formats only; current_date is the one reading of the clock)
    exp.Year, exp.Quarter, exp.Month, exp.Week, exp.Day, exp.DayOfWeek, exp.DayOfWeekIso, exp.DayOfYear,
    exp.Hour, exp.Minute, exp.Second, exp.Extract, exp.TimestampTrunc, exp.DateTrunc, exp.DateDiff,
    exp.DateAdd, exp.DateSub, exp.TimeToStr, exp.DateFromParts, exp.LastDay, exp.Dayname,
    exp.Monthname, exp.CurrentDate,
    # casts
    exp.Cast, exp.TryCast,
    # aggregates
    exp.Count, exp.CountIf, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Median, exp.Mode, exp.Stddev,
    exp.StddevPop, exp.StddevSamp, exp.Variance, exp.VariancePop, exp.Corr, exp.CovarPop, exp.CovarSamp,
    exp.PercentileCont, exp.PercentileDisc, exp.ApproxDistinct, exp.GroupConcat, exp.LogicalAnd,
    exp.LogicalOr, exp.ArgMin, exp.ArgMax, exp.AnyValue, exp.First, exp.Last,
    # window functions
    exp.RowNumber, exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist, exp.Ntile, exp.Lag,
    exp.Lead, exp.FirstValue, exp.LastValue, exp.NthValue,
})

# Functions SQLGlot has no class for (it keeps them as Anonymous with the name as written).
ANONYMOUS_FUNCTIONS = frozenset({"date_part", "datepart", "age"})

# Everything else a checked expression may contain besides columns, subqueries and the functions.
_NODES: frozenset[type] = frozenset({
    exp.Identifier, exp.Star, exp.Literal, exp.Null, exp.Boolean, exp.Alias, exp.Paren, exp.Tuple,
    exp.Neg, exp.Not, exp.And, exp.Or, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.NullSafeEQ, exp.NullSafeNEQ, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike, exp.Escape,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.DPipe, exp.Interval, exp.DataTypeParam,
    exp.Distinct, exp.Ordered, exp.Order, exp.Window, exp.WindowSpec, exp.Filter, exp.WithinGroup,
    exp.IgnoreNulls, exp.RespectNulls, exp.Where, exp.Group, exp.Rollup, exp.Cube, exp.GroupingSets,
    exp.Having, exp.Qualify, exp.Limit, exp.Offset, exp.LimitOptions, exp.Exists, exp.Any, exp.All,
})

_ALLOWED = FUNCTIONS | _NODES

_TYPES = frozenset({
    exp.DataType.Type.BOOLEAN, exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.INT128,  # INT128 is HUGEINT
    exp.DataType.Type.UTINYINT, exp.DataType.Type.USMALLINT, exp.DataType.Type.UINT,
    exp.DataType.Type.UBIGINT, exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE,
    exp.DataType.Type.DECIMAL, exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR,
    exp.DataType.Type.CHAR, exp.DataType.Type.DATE, exp.DataType.Type.TIME,
    exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ, exp.DataType.Type.TIMESTAMPTZ,
    exp.DataType.Type.INTERVAL,
})

_SELECT_ARGS = frozenset({"with_", "expressions", "distinct", "from_", "joins", "where", "group",
                          "having", "qualify", "windows", "order", "limit", "offset"})
_SETOP_ARGS = frozenset({"with_", "this", "expression", "distinct", "by_name", "order", "limit", "offset"})
_SUBQUERY_ARGS = frozenset({"this", "alias", "with_", "order", "limit", "offset"})
_TABLE_ARGS = frozenset({"this", "db", "catalog", "alias"})
_JOIN_ARGS = frozenset({"this", "on", "side", "kind", "using", "method"})
_JOIN_KINDS = frozenset({"", "INNER", "OUTER", "CROSS", "SEMI", "ANTI"})
_JOIN_METHODS = frozenset({"", "NATURAL", "ASOF", "POSITIONAL"})
_QUERIES = (exp.Select, exp.SetOperation, exp.Subquery)
_COLUMN_ARGS = frozenset({"this", "table", "db", "catalog"})
_QUERY_CLASSES = frozenset({exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery})
_CLAUSES = {"when": "Time travel (AT …)", "version": "Time travel (AT …)", "pivots": "PIVOT",
            "sample": "SAMPLE", "laterals": "LATERAL", "into": "SELECT … INTO", "except_": "EXCLUDE",
            "replace": "REPLACE", "rename": "RENAME", "ilike": "ILIKE"}

# Strings a node renders verbatim (a Var's text, a window frame's side...) must be plain words:
# SQLGlot turns extract("year; drop" from x) into a Var that would otherwise come out unquoted.
_WORD = re.compile(r"[A-Za-z_][A-Za-z_ ]*")
_NUMBER = re.compile(r"[0-9][0-9_]*(\.[0-9_]*)?([eE][+-]?[0-9]+)?|\.[0-9_]+([eE][+-]?[0-9]+)?")
_FIRST_TOKENS = frozenset({TokenType.SELECT, TokenType.WITH, TokenType.FROM, TokenType.L_PAREN})
_OPENERS = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE})
_CLOSERS = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END})

_DIALECT = DuckDB()


class _GrantedView(exp.Expression):
    """A table reference already rewritten to its grant's subquery; renders its text as is."""

    arg_types = {"this": True}


class _Generator(DuckDB.Generator):
    TRANSFORMS = {**DuckDB.Generator.TRANSFORMS, _GrantedView: lambda self, e: e.args["this"]}


# --- rewrite ----------------------------------------------------------------------------------


def rewrite(sql: str, resolve: Callable[[str], TableScope | None], *, max_length: int = 20_000) -> Rewritten:
    """Checks one consumer query and rewrites it to read only through the grants `resolve` returns
    (None for a name that is not granted, or does not exist: the two are not told apart)."""
    if len(sql) > max_length:
        raise SqlRefused(_("The query is too long: %(length)d characters, at most %(max)d are accepted.")
                         % {"length": len(sql), "max": max_length})
    try:
        tokens = _DIALECT.tokenize(sql)
    except (TokenError, ValueError) as e:
        raise SqlRefused(_("The query could not be read: %(error)s") % {"error": str(e)[:200]}) from None
    if not tokens:
        raise SqlRefused(_("The query is empty."))
    if tokens[0].token_type not in _FIRST_TOKENS:
        # Before parsing: SQLGlot would parse PRAGMA, CALL, LOAD... as opaque commands.
        raise SqlRefused(_("Only a SELECT query is accepted."), tokens[0].text)
    depth = deepest = 0
    for token in tokens:
        if token.token_type in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type in _CLOSERS:
            depth -= 1
    if deepest > MAX_NESTING:
        raise SqlRefused(_("The query is nested too deeply: at most %(max)d levels of parentheses.")
                         % {"max": MAX_NESTING})
    try:
        statements = [s for s in _DIALECT.parser(error_level=ErrorLevel.RAISE).parse(tokens, sql) if s]
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        raise SqlRefused(_("The query could not be parsed: %(error)s (line %(line)s, column %(col)s).") % {
            "error": first.get("description") or str(e)[:200], "line": first.get("line", "?"),
            "col": first.get("col", "?")}, first.get("highlight")) from None
    except RecursionError:
        raise SqlRefused(_("The query is nested too deeply.")) from None
    except SqlglotError as e:
        raise SqlRefused(_("The query could not be parsed: %(error)s") % {"error": str(e)[:200]}) from None
    except Exception:  # SQLGlot trips over some garbage (AttributeError...): still only a refusal
        raise SqlRefused(_("The query could not be parsed.")) from None
    if len(statements) != 1:
        raise SqlRefused(_("Exactly one statement is accepted; this text has %(count)d.")
                         % {"count": len(statements)})
    statement = statements[0]
    if not isinstance(statement, _QUERIES):
        raise SqlRefused(_("Only a SELECT query is accepted."), _fragment(statement))
    gate = _Gate(resolve)
    try:
        gate.query(statement, None, {})
        text = _Generator(identify=True, comments=False, unsupported_level=ErrorLevel.RAISE,
                          dialect=_DIALECT).generate(statement, copy=False)
    except RecursionError:
        raise SqlRefused(_("The query is nested too deeply.")) from None
    except UnsupportedError as e:
        raise SqlRefused(_("The query uses something the gateway cannot run: %(error)s")
                         % {"error": str(e)[:200]}) from None
    columns = {name: [c for c in gate.scopes[name].columns if c in used] for name, used in gate.used.items()}
    return Rewritten(sql=text, tables=list(gate.scopes), columns=columns)


def _fragment(node: exp.Expr) -> str:
    try:
        return node.sql(dialect=_DIALECT)[:200]
    except Exception:  # a fragment is a courtesy; never let it hide the refusal
        return type(node).__name__


def _lower(name: str) -> str:
    return name.lower()


def _name(node: exp.Expr) -> str:
    return node.this if type(node) is exp.Identifier else node.name


@dataclass(eq=False)
class _Rel:
    """A relation in a FROM clause, as the query sees it."""

    alias: str  # lower case; "" for an unaliased subquery
    cols: dict[str, str] | None  # lower name -> name; None when not all names are known
    scope: TableScope | None = None  # set for a granted table
    granted: dict[str, str] | None = None  # lower visible name -> granted column (for the audit)


@dataclass(eq=False)
class _Env:
    """The relations and SELECT aliases a clause can name, and the enclosing query's for correlation."""

    parent: _Env | None
    rels: list[_Rel] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)


class _Gate:
    def __init__(self, resolve: Callable[[str], TableScope | None]):
        self._resolve = resolve
        self._resolved: dict[str, TableScope | None] = {}  # resolve() may cost a database query
        self.scopes: dict[str, TableScope] = {}  # referenced, in order of first reference
        self.used: dict[str, set[str]] = {}
        self.ctes = 0
        self.depth = 0

    # queries ---------------------------------------------------------------------------------

    def query(self, node: exp.Expr, outer: _Env | None, ctes: dict) -> _Rel:
        """Checks and rewrites a query in place; returns its output as a relation."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise SqlRefused(_("The query is nested too deeply."))
        try:
            if isinstance(node, exp.Select):
                return self._select(node, outer, ctes)
            if isinstance(node, exp.SetOperation):
                # a UNION b UNION c ... parses left-deep: walk the chain instead of recursing per link.
                links = []
                while isinstance(node, exp.SetOperation):
                    self._args(node, _SETOP_ARGS)
                    ctes = self._with(node, outer, ctes)
                    links.append((node, ctes))
                    node = node.this
                out = self.query(node, outer, ctes)
                for link, link_ctes in reversed(links):
                    right = self.query(link.expression, outer, link_ctes)
                    if link.args.get("by_name"):
                        out = _Rel("", None if out.cols is None or right.cols is None else {**out.cols, **right.cols})
                    self._modifiers(link, out, outer, link_ctes)
                return out
            if isinstance(node, exp.Subquery):
                self._args(node, _SUBQUERY_ARGS)
                ctes = self._with(node, outer, ctes)
                out = self.query(node.this, outer, ctes)
                self._modifiers(node, out, outer, ctes)
                return out
            raise SqlRefused(_("Only a SELECT query is accepted here."), _fragment(node))
        finally:
            self.depth -= 1

    def _modifiers(self, node: exp.Expr, out: _Rel, outer: _Env | None, ctes: dict) -> None:
        # ORDER BY / LIMIT after a set operation or parenthesised query name its output columns.
        env = _Env(outer, [_Rel("", out.cols)])
        for key in ("order", "limit", "offset"):
            if node.args.get(key):
                self.expr(node.args[key], env, ctes)

    def _with(self, node: exp.Expr, outer: _Env | None, ctes: dict) -> dict:
        with_ = node.args.get("with_")
        if not with_:
            return ctes
        if with_.args.get("recursive"):
            raise SqlRefused(_("Recursive CTEs (WITH RECURSIVE) are not accepted."), "WITH RECURSIVE")
        self._args(with_, {"expressions"})
        ctes = dict(ctes)
        for cte in with_.expressions:
            self._args(cte, {"this", "alias", "materialized"})
            out = self.query(cte.this, outer, ctes)  # sees earlier CTEs, not itself
            alias = cte.args["alias"]
            name = alias.name
            cols = self._renamed(out.cols, alias.columns, name)
            self.ctes += 1
            private = f"{_CTE_PREFIX}{self.ctes}"
            alias.set("this", exp.to_identifier(private))
            ctes[_lower(name)] = (private, cols)
        return ctes

    def _select(self, node: exp.Select, outer: _Env | None, ctes: dict) -> _Rel:
        self._args(node, _SELECT_ARGS)
        ctes = self._with(node, outer, ctes)
        env = _Env(outer)
        if node.args.get("from_"):
            self._source(node.args["from_"].this, env, ctes)
        joins = node.args.get("joins") or []
        for join in joins:
            self._args(join, _JOIN_ARGS)
            if (join.side or "") not in ("", "LEFT", "RIGHT", "FULL") or (join.kind or "") not in _JOIN_KINDS \
                    or join.method not in _JOIN_METHODS:
                raise SqlRefused(_("This kind of join is not accepted."), _fragment(join))
            self._source(join.this, env, ctes)
        projections = node.expressions
        for p in projections:
            if isinstance(p, exp.Alias):
                env.aliases.add(_lower(p.alias))
        for join in joins:
            if join.args.get("on"):
                self.expr(join.args["on"], env, ctes)
            for ident in join.args.get("using") or []:
                if not isinstance(ident, (exp.Identifier, exp.Column)) or not ident.name:
                    raise SqlRefused(_("JOIN … USING accepts column names only."), _fragment(ident))
                self._unqualified(ident.name, env, ident)
            if join.method == "NATURAL":  # compares every common column: count them all as read
                for rel in env.rels:
                    self._use_all(rel)
        for key in ("distinct", "where", "group", "having", "qualify", "order", "limit", "offset"):
            if node.args.get(key):
                self.expr(node.args[key], env, ctes)
        for window in node.args.get("windows") or []:
            self.expr(window, env, ctes)
        cols: dict[str, str] | None = {}
        for p in projections:
            out = self._projection(p, env, ctes)
            cols = None if out is None or cols is None else {**cols, **out}
        return _Rel("", cols)

    def _projection(self, p: exp.Expr, env: _Env, ctes: dict) -> dict[str, str] | None:
        """Checks one SELECT-list item; returns its output columns, None where a name is unknown."""
        if isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star)):
            star = p if isinstance(p, exp.Star) else p.this
            if star is not p:
                self._args(p, _COLUMN_ARGS)
            self._args(star, {"except_", "replace"})
            rels = env.rels if isinstance(p, exp.Star) else [self._qualifier(p, env)]
            if not rels:
                raise SqlRefused(_("SELECT * needs a FROM clause."), "*")
            for rel in rels:
                self._use_all(rel)
            for item in (star.args.get("except_") or []) + (star.args.get("replace") or []):
                self.expr(item, env, ctes)
            excluded = {_lower(c.name) for c in star.args.get("except_") or []}
            out: dict[str, str] = {}
            for rel in rels:
                if rel.cols is None:
                    return None
                out.update((k, v) for k, v in rel.cols.items() if k not in excluded)
            return out
        self.expr(p, env, ctes)
        if isinstance(p, exp.Alias):
            return {_lower(p.alias): p.alias}
        if isinstance(p, exp.Column):
            return {_lower(p.name): p.name}
        return None  # DuckDB names it after its text: nothing outside can rely on that name

    # sources ---------------------------------------------------------------------------------

    def _source(self, node: exp.Expr, env: _Env, ctes: dict) -> None:
        if isinstance(node, exp.Table):
            env.rels.append(self._table(node, ctes))
        elif isinstance(node, exp.Subquery):
            # DuckDB binds FROM subqueries laterally: they may name the relations before them.
            out = self.query(node, _Env(env.parent, list(env.rels), set()), ctes)
            alias = node.args.get("alias")
            if alias is not None:
                self._args(alias, {"this", "columns"})
            name = alias.name if alias is not None else ""
            env.rels.append(_Rel(_lower(name), self._renamed(out.cols, alias.columns if alias else [], name)))
        elif isinstance(node, exp.Values):
            self._args(node, {"expressions", "alias"})
            for row in node.expressions:
                self.expr(row, _Env(env.parent), ctes)
            alias = node.args.get("alias")
            cols = {_lower(c.name): c.name for c in alias.columns} if alias is not None and alias.columns else None
            env.rels.append(_Rel(_lower(alias.name) if alias is not None else "", cols))
        elif isinstance(node, (exp.Func, exp.Lateral, exp.Unnest)):
            raise SqlRefused(_("Table functions are not accepted; name a granted table."), _fragment(node))
        else:
            raise SqlRefused(_("Only granted tables, CTEs and subqueries can be read."), _fragment(node))

    def _table(self, node: exp.Table, ctes: dict) -> _Rel:
        this = node.this
        if not isinstance(this, exp.Identifier):
            raise SqlRefused(_("Table functions are not accepted; name a granted table."), _fragment(node))
        self._args(node, _TABLE_ARGS)
        alias = node.args.get("alias")
        if alias is not None:
            self._args(alias, {"this", "columns"})
        alias_name = alias.name if alias is not None and alias.name else this.name
        alias_cols = alias.columns if alias is not None else []
        parts = [p for p in (node.catalog, node.db, this.name) if p]
        if len(parts) == 1 and _lower(this.name) in ctes:
            private, cols = ctes[_lower(this.name)]
            node.set("this", exp.to_identifier(private))
            node.set("alias", exp.TableAlias(this=exp.to_identifier(alias_name),
                                             columns=[c.copy() for c in alias_cols]))
            return _Rel(_lower(alias_name), self._renamed(cols, alias_cols, alias_name))
        if len(parts) == 1:
            name = parts[0]
            if any(ch in name for ch in "/\\:") or name.lower().endswith(
                    (".csv", ".parquet", ".json", ".jsonl", ".ndjson", ".txt", ".tsv", ".xlsx", ".db")):
                raise SqlRefused(_("Reading files is not accepted; name a granted table."), name)
        else:
            name = ".".join(parts).lower()
        if name not in self._resolved:
            self._resolved[name] = self._resolve(name)
        scope = self._resolved[name]
        if scope is None:
            raise SqlRefused(_("Table “%(table)s” is not granted to you.") % {"table": ".".join(parts)},
                             _fragment(node))
        if len(alias_cols) > len(scope.columns):
            raise SqlRefused(_("Too many column aliases for “%(table)s”.") % {"table": scope.name},
                             _fragment(alias))
        self.scopes.setdefault(scope.name, scope)
        self.used.setdefault(scope.name, set())
        node.replace(_GrantedView(this=self._view_sql(scope, alias_name, alias_cols)))
        granted = list(scope.columns)
        visible = [c.name for c in alias_cols] + granted[len(alias_cols):]
        return _Rel(_lower(alias_name), {_lower(v): v for v in visible}, scope,
                    {_lower(v): g for v, g in zip(visible, granted)})

    @staticmethod
    def _view_sql(scope: TableScope, alias: str, alias_cols: list) -> str:
        if not scope.columns:
            raise SqlRefused(_("No column of “%(table)s” is granted to you.") % {"table": scope.name})
        select = ", ".join(f"({expr}) AS {quote_ident(col)}" for col, expr in scope.columns.items())
        where = f" WHERE ({scope.row_filter})" if scope.row_filter else ""
        renamed = "(" + ", ".join(quote_ident(c.name) for c in alias_cols) + ")" if alias_cols else ""
        return f"(SELECT {select} FROM {scope.source_sql}{where}) AS {quote_ident(alias)}{renamed}"

    @staticmethod
    def _renamed(cols: dict[str, str] | None, alias_cols: list, name: str) -> dict[str, str] | None:
        if not alias_cols:
            return cols
        if cols is None:  # the aliases rename the first columns; the rest stay unknown
            return None
        if len(alias_cols) > len(cols):
            raise SqlRefused(_("Too many column aliases for “%(table)s”.") % {"table": name})
        names = [c.name for c in alias_cols] + list(cols.values())[len(alias_cols):]
        return {_lower(n): n for n in names}

    # expressions -----------------------------------------------------------------------------

    def expr(self, root: exp.Expr, env: _Env, ctes: dict) -> None:
        """Checks an expression against the allowlists, depth first without recursion (subqueries
        recurse through query())."""
        stack = [(root, 0)]
        pop, push = stack.pop, stack.append
        while stack:
            node, depth = pop()
            cls = type(node)
            if cls is exp.Column:
                self._column(node, env)
                continue
            if cls is exp.Identifier:
                continue  # always rendered quoted
            if cls is exp.Literal:
                if not node.args.get("is_string") and not _NUMBER.fullmatch(node.args["this"]):
                    raise SqlRefused(_("“%(text)s” is not a number.") % {"text": node.this}, node.this)
                continue
            if cls not in _ALLOWED:
                if cls in _QUERY_CLASSES:
                    self.query(node, env, ctes)
                    continue
                if cls is exp.Anonymous:
                    if node.name.lower() not in ANONYMOUS_FUNCTIONS:
                        raise SqlRefused(_("Function “%(name)s” is not accepted.") % {"name": node.name},
                                         _fragment(node))
                elif cls is exp.Var:
                    if not _WORD.fullmatch(node.name):
                        raise SqlRefused(_("“%(text)s” is not accepted here.") % {"text": node.name}, node.name)
                    continue
                elif cls is exp.DataType:
                    self._type(node)
                    continue
                else:
                    raise self._refusal(node)
            depth += 1
            if depth > MAX_TREE_DEPTH:
                raise SqlRefused(_("The query is nested too deeply."))
            for value in node.args.values():
                if isinstance(value, exp.Expr):
                    push((value, depth))
                elif type(value) is list:
                    for v in value:
                        if isinstance(v, exp.Expr):
                            push((v, depth))
                elif type(value) is str and cls is not exp.Anonymous and not _WORD.fullmatch(value):
                    raise SqlRefused(_("“%(text)s” is not accepted here.") % {"text": value}, value)

    @staticmethod
    def _type(node: exp.DataType) -> None:
        if node.this not in _TYPES or node.args.get("nested") or node.args.get("kind") or any(
                not isinstance(p, exp.DataTypeParam) or not isinstance(p.this, exp.Literal)
                for p in node.expressions):
            raise SqlRefused(_("Casting to “%(type)s” is not accepted; use a plain type.")
                             % {"type": _fragment(node)}, _fragment(node))

    @staticmethod
    def _refusal(node: exp.Expr) -> SqlRefused:
        text = _fragment(node)
        if isinstance(node, exp.Lambda):
            return SqlRefused(_("Lambda functions are not accepted."), text)
        if isinstance(node, (exp.Placeholder, exp.Parameter, exp.SessionParameter)):
            return SqlRefused(_("Parameters are not accepted; write the values into the query."), text)
        if isinstance(node, exp.Func):
            return SqlRefused(_("Function “%(name)s” is not accepted.") % {"name": node.sql_name().lower()}, text)
        return SqlRefused(_("“%(text)s” is not accepted in a shared-data query.") % {"text": text[:80]}, text)

    # columns ---------------------------------------------------------------------------------

    def _column(self, node: exp.Column, env: _Env) -> None:
        args = node.args  # read directly: the property accessors dominate the check's cost
        for key, value in args.items():
            if value and key not in _COLUMN_ARGS:
                raise SqlRefused(_("“%(text)s” is not accepted in a shared-data query.")
                                 % {"text": _fragment(node)}, _fragment(node))
        this = args["this"]
        if type(this) is exp.Star:  # count(p.*)
            self._use_all(self._qualifier(node, env))
            return
        name = _name(this)
        if not args.get("table"):
            self._unqualified(name, env, node)
            return
        rel = self._qualifier(node, env)
        key = name.lower()
        if rel.cols is not None and key not in rel.cols:
            if rel.scope is not None:
                raise SqlRefused(_("Column “%(column)s” of “%(table)s” is not granted to you, or does not exist.")
                                 % {"column": name, "table": rel.scope.name}, _fragment(node))
            raise SqlRefused(_("Column “%(column)s” does not exist in “%(table)s”.")
                             % {"column": name, "table": _name(args["table"])}, _fragment(node))
        self._use(rel, key)

    def _qualifier(self, node: exp.Column, env: _Env) -> _Rel:
        """The relation a qualified column names (alias.col, or schema.table.col without an alias)."""
        args = node.args
        table = _name(args["table"]).lower()
        parts = [_name(args[k]) for k in ("catalog", "db", "table") if args.get(k)]
        full = ".".join(parts).lower() if len(parts) > 1 else None
        scope: _Env | None = env
        while scope is not None:
            for rel in scope.rels:
                if rel.alias == table and rel.alias and (
                        full is None or (rel.scope is not None and rel.scope.name == full)):
                    if full is not None:  # the rewritten subquery is aliased by the last part only
                        node.set("db", None)
                        node.set("catalog", None)
                    return rel
            scope = scope.parent
        raise SqlRefused(_("“%(table)s” is not a table or alias of this query.") % {"table": ".".join(parts)},
                         _fragment(node))

    def _unqualified(self, name: str, env: _Env, node: exp.Expr) -> None:
        key = _lower(name)
        scope: _Env | None = env
        lenient = False
        while scope is not None:
            found = [rel for rel in scope.rels if rel.cols is not None and key in rel.cols]
            if found:  # several: DuckDB decides (USING merges them, else it reports the ambiguity)
                for rel in found:
                    self._use(rel, key)
                return
            if key in scope.aliases:
                return
            lenient = lenient or any(rel.cols is None for rel in scope.rels)
            if any(rel.alias == key for rel in scope.rels):
                raise SqlRefused(_("“%(name)s” names a table; select its columns instead.") % {"name": name},
                                 _fragment(node))
            scope = scope.parent
        if not lenient:
            raise SqlRefused(_("Column “%(column)s” is not granted to you, or does not exist.") % {"column": name},
                             _fragment(node))

    def _use(self, rel: _Rel, key: str) -> None:
        if rel.scope is not None:
            self.used[rel.scope.name].add(rel.granted[key])

    def _use_all(self, rel: _Rel) -> None:
        if rel.scope is not None:
            self.used[rel.scope.name].update(rel.granted.values())

    @staticmethod
    def _args(node: exp.Expr, allowed) -> None:
        for key, value in node.args.items():
            if key not in allowed and value not in (None, False, [], ""):
                clause = _CLAUSES.get(key) or key.rstrip("_").replace("_", " ").upper()
                raise SqlRefused(_("%(clause)s is not accepted in a shared-data query.") % {"clause": clause},
                                 _fragment(node))


# --- execution --------------------------------------------------------------------------------


def sandbox(con: duckdb.DuckDBPyConnection, allowed_dirs: list[str]) -> None:
    """Locks a connection down for consumer queries: files only under `allowed_dirs` (the warehouse
    folders the views read; DuckDB's own spill files still go to its temp_directory), no network, no
    extensions, no Python-object replacement scans, and the configuration locked so that nothing run
    later can undo it."""
    con.execute(f"SET allowed_directories = [{', '.join(quote_literal(d) for d in allowed_dirs)}]")
    for setting in ("enable_external_access = false", "autoinstall_known_extensions = false",
                    "autoload_known_extensions = false", "allow_community_extensions = false",
                    "python_enable_replacements = false", "enable_progress_bar = false",
                    "lock_configuration = true"):
        con.execute(f"SET {setting}")


def run(con: duckdb.DuckDBPyConnection, rewritten_sql: str, *, max_rows: int, timeout_s: float
        ) -> tuple[list[str], list[tuple], bool]:
    """Runs rewritten SQL: (column names, at most max_rows rows, whether more were left out).
    Interrupted after timeout_s (SqlTimeout); other DuckDB errors become SqlRefused."""
    lock = threading.Lock()
    running = True

    def interrupt():
        with lock:  # never interrupt a later query on the same connection
            if running:
                con.interrupt()

    timer = threading.Timer(timeout_s, interrupt)
    timer.daemon = True
    timer.start()
    try:
        result = con.execute(rewritten_sql)  # streams: rows are computed as they are fetched
        names = [d[0] for d in result.description]
        rows = result.fetchmany(max_rows + 1)
    except duckdb.InterruptException:
        raise SqlTimeout(_("The query ran longer than %(seconds)s seconds and was stopped.")
                         % {"seconds": f"{timeout_s:g}"}) from None
    except (duckdb.ConversionException, duckdb.OutOfRangeException):
        # Their text quotes the offending value; say what went wrong without echoing data.
        raise SqlRefused(_("The query failed: a value could not be converted or is out of range "
                           "(TRY_CAST returns NULL instead).")) from None
    except duckdb.Error as e:
        raise SqlRefused(_("The query failed: %(error)s") % {"error": str(e).strip()[:500]}) from None
    finally:
        with lock:
            running = False
        timer.cancel()
    return names, rows[:max_rows], len(rows) > max_rows
