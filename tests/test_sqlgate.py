"""The sharing gateway's SQL entry against a real, sandboxed DuckDB: two Parquet resources behind
views, grants that mask the ID numbers and keep one town's rows, and every query a consumer could
try to reach past them."""

from __future__ import annotations

import re
import time

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shuzheng.sharing.sqlgate import SqlRefused, SqlTimeout, TableScope, rewrite, run, sandbox

TOWN = "130682100"  # the consumer's grant: 定州 one town
OTHER_TOWN = "130682101"
PEOPLE = "public_security.household_register"
ENTERPRISES = "market.enterprises"
MASKED_ID = re.compile(r"^130682\*{8}[0-9]{3}[0-9X]$")


pytestmark = pytest.mark.usefixtures("english")  # the assertions read the English messages

def id_mask(column: str) -> str:
    return f"substr(\"{column}\", 1, 6) || '********' || substr(\"{column}\", 15, 4)"


PEOPLE_SCOPE = TableScope(
    name=PEOPLE,
    source_sql='"v_people"',
    columns={"公民身份号码": id_mask("公民身份号码"), "姓名": '"姓名"', "乡镇代码": '"乡镇代码"',
             "出生日期": '"出生日期"'},  # 户籍地址 exists but is not granted
    row_filter=f"\"乡镇代码\" = '{TOWN}'",
)
ENTERPRISE_SCOPE = TableScope(
    name=ENTERPRISES,
    source_sql='"v_enterprises"',
    columns={"统一社会信用代码": '"统一社会信用代码"', "企业名称": '"企业名称"',
             "法定代表人身份号码": id_mask("法定代表人身份号码"), "乡镇代码": '"乡镇代码"',
             "注册资本": '"注册资本"'},  # 联系电话 exists but is not granted
    row_filter=None,
)
# A one-part grant, to show that a CTE of the same name wins.
PEOPLE_SHORT = TableScope("people", PEOPLE_SCOPE.source_sql, PEOPLE_SCOPE.columns, PEOPLE_SCOPE.row_filter)
SCOPES = {s.name: s for s in (PEOPLE_SCOPE, ENTERPRISE_SCOPE, PEOPLE_SHORT)}


def resolve(name: str) -> TableScope | None:
    return SCOPES.get(name)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warehouse")
    con = duckdb.connect()
    con.execute(f"""COPY (
        SELECT '130682' || CAST(1960 + i % 40 AS VARCHAR) || lpad(CAST(i % 12 + 1 AS VARCHAR), 2, '0')
                 || lpad(CAST(i % 28 + 1 AS VARCHAR), 2, '0') || lpad(CAST(i % 1000 AS VARCHAR), 3, '0')
                 || CASE WHEN i % 11 = 0 THEN 'X' ELSE CAST(i % 10 AS VARCHAR) END AS "公民身份号码",
               '居民' || i AS "姓名",
               '定州市南城区' || i || '号' AS "户籍地址",
               CASE WHEN i % 2 = 0 THEN '{TOWN}' ELSE '{OTHER_TOWN}' END AS "乡镇代码",
               make_date(1960 + i % 40, i % 12 + 1, i % 28 + 1) AS "出生日期"
        FROM range(2000) t(i)) TO '{folder}/people.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (
        SELECT '91130682' || lpad(CAST(j AS VARCHAR), 10, '0') AS "统一社会信用代码",
               '定州企业' || j AS "企业名称",
               p."公民身份号码" AS "法定代表人身份号码",
               p."乡镇代码" AS "乡镇代码",
               j * 10.0 AS "注册资本",
               '1380000' || lpad(CAST(j AS VARCHAR), 4, '0') AS "联系电话"
        FROM range(200) t(j) JOIN read_parquet('{folder}/people.parquet') p ON p."姓名" = '居民' || (j * 3))
        TO '{folder}/enterprises.parquet' (FORMAT parquet)""")
    con.execute(f"CREATE TEMP VIEW v_people AS SELECT * FROM read_parquet('{folder}/people.parquet')")
    con.execute(f"CREATE TEMP VIEW v_enterprises AS SELECT * FROM read_parquet('{folder}/enterprises.parquet')")
    sandbox(con, [str(folder)])
    clear_ids = {r[0] for r in con.execute('SELECT "公民身份号码" FROM v_people').fetchall()}
    yield con, folder, clear_ids
    con.close()


def query(warehouse, sql: str, max_rows: int = 10_000):
    con = warehouse[0]
    rewritten = rewrite(sql, resolve)
    names, rows, truncated = run(con, rewritten.sql, max_rows=max_rows, timeout_s=10)
    return rewritten, names, rows, truncated


def oracle(warehouse, sql: str):
    """What the raw data says, read straight from the views (the test's own, trusted query)."""
    return warehouse[0].execute(sql).fetchall()


def assert_no_clear_id(warehouse, rows):
    clear_ids = warehouse[2]
    for row in rows:
        for cell in row:
            text = str(cell)
            assert text not in clear_ids and not any(i in text for i in clear_ids if len(text) >= 18), row
            assert "1306821990" not in text and "1306821960" not in text, row


# --- what a consumer can do --------------------------------------------------------------------


def test_simple_select(warehouse):
    rewritten, names, rows, truncated = query(warehouse, f"SELECT 姓名, 乡镇代码 FROM {PEOPLE} ORDER BY 姓名")
    assert names == ["姓名", "乡镇代码"]
    assert not truncated
    assert len(rows) == oracle(warehouse, f"SELECT count(*) FROM v_people WHERE 乡镇代码 = '{TOWN}'")[0][0] == 1000
    assert {r[1] for r in rows} == {TOWN}
    assert rewritten.tables == [PEOPLE]
    assert rewritten.columns == {PEOPLE: ["姓名", "乡镇代码"]}


def test_star_shows_granted_columns_masked(warehouse):
    rewritten, names, rows, _ = query(warehouse, f"select * from {PEOPLE.upper()}")
    assert names == ["公民身份号码", "姓名", "乡镇代码", "出生日期"]
    assert len(rows) == 1000
    assert all(MASKED_ID.match(r[0]) for r in rows), rows[:3]
    assert rewritten.columns == {PEOPLE: ["公民身份号码", "姓名", "乡镇代码", "出生日期"]}
    assert_no_clear_id(warehouse, rows)
    # quoted parts name the same grant
    assert query(warehouse, 'SELECT count(*) FROM "public_security"."household_register"')[2] == [(1000,)]


def test_join_of_two_granted_tables_with_aliases(warehouse):
    rewritten, names, rows, _ = query(warehouse, f"""
        SELECT p.姓名, e.企业名称, e.法定代表人身份号码, p.乡镇代码
        FROM {PEOPLE} AS p JOIN {ENTERPRISES} e ON e.法定代表人身份号码 = p.公民身份号码 AND e.乡镇代码 = p.乡镇代码
        WHERE e.注册资本 >= 100 ORDER BY e.注册资本""")
    assert names == ["姓名", "企业名称", "法定代表人身份号码", "乡镇代码"]
    assert rows and {r[3] for r in rows} == {TOWN}
    assert all(MASKED_ID.match(r[2]) for r in rows)
    assert rewritten.tables == [PEOPLE, ENTERPRISES]
    assert rewritten.columns == {PEOPLE: ["公民身份号码", "姓名", "乡镇代码"],
                                 ENTERPRISES: ["企业名称", "法定代表人身份号码", "乡镇代码", "注册资本"]}
    assert_no_clear_id(warehouse, rows)


def test_cte(warehouse):
    rewritten, _, rows, _ = query(warehouse, f"""
        WITH older AS (SELECT 姓名, 出生日期 FROM {PEOPLE} WHERE 出生日期 < DATE '1980-01-01'),
             counted AS (SELECT count(*) AS n FROM older)
        SELECT n FROM counted""")
    expected = oracle(warehouse, f"SELECT count(*) FROM v_people WHERE 乡镇代码 = '{TOWN}' "
                                 "AND 出生日期 < DATE '1980-01-01'")
    assert rows == expected
    assert rewritten.columns == {PEOPLE: ["姓名", "出生日期"]}


def test_cte_shadows_a_granted_name_and_cannot_shadow_the_source(warehouse):
    rewritten, _, rows, _ = query(warehouse, "WITH people AS (SELECT 'from the cte' AS 姓名) SELECT 姓名 FROM people")
    assert rows == [("from the cte",)] and rewritten.tables == []
    # A CTE named like the trusted source view must not replace what the grant reads.
    _, _, rows, _ = query(warehouse, f"""
        WITH v_people AS (SELECT '130682199001010011' AS 公民身份号码, '假' AS 姓名,
                                 '{TOWN}' AS 乡镇代码, DATE '1990-01-01' AS 出生日期)
        SELECT count(*), min(姓名) FROM {PEOPLE}""")
    assert rows[0][0] == 1000 and rows[0][1] != "假"


def test_subqueries(warehouse):
    _, _, rows, _ = query(warehouse, f"""
        SELECT d.姓名, (SELECT count(*) FROM {ENTERPRISES} e WHERE e.乡镇代码 = d.乡镇代码) AS 企业数
        FROM (SELECT 姓名, 乡镇代码 FROM {PEOPLE} WHERE 姓名 IN (SELECT '居民' || CAST(i AS VARCHAR)
              FROM (VALUES (0), (1), (2), (4)) v(i))) AS d
        ORDER BY d.姓名""")
    expected = oracle(warehouse, f"SELECT count(*) FROM v_enterprises WHERE 乡镇代码 = '{TOWN}'")[0][0]
    assert rows == [("居民0", expected), ("居民2", expected), ("居民4", expected)]


def test_aggregate_group_by_having_order_by(warehouse):
    rewritten, names, rows, _ = query(warehouse, f"""
        SELECT year(出生日期) AS 年份, count(*) AS 人数, count(DISTINCT 公民身份号码) AS 号码数
        FROM {PEOPLE} GROUP BY 年份 HAVING count(*) >= 25 ORDER BY 人数 DESC, 年份 LIMIT 5""")
    expected = oracle(warehouse, f"""SELECT year(出生日期) AS y, count(*) AS n FROM v_people
        WHERE 乡镇代码 = '{TOWN}' GROUP BY y HAVING count(*) >= 25 ORDER BY n DESC, y LIMIT 5""")
    assert names == ["年份", "人数", "号码数"]
    assert [(r[0], r[1]) for r in rows] == expected
    assert rewritten.columns == {PEOPLE: ["公民身份号码", "出生日期"]}


def test_window_function(warehouse):
    _, _, rows, _ = query(warehouse, f"""
        SELECT 姓名, row_number() OVER (PARTITION BY year(出生日期) ORDER BY 姓名) AS 序号,
               lag(姓名) OVER w AS 上一位, count(*) OVER w AS 累计
        FROM {PEOPLE} WINDOW w AS (ORDER BY 姓名)
        QUALIFY 序号 = 1 ORDER BY 姓名 LIMIT 3""")
    assert len(rows) == 3 and all(r[1] == 1 for r in rows)


def test_union_intersect_except(warehouse):
    _, _, rows, _ = query(warehouse, f"""
        SELECT 乡镇代码 FROM {PEOPLE} UNION SELECT 乡镇代码 FROM {ENTERPRISES} ORDER BY 1""")
    assert rows == [(TOWN,), (OTHER_TOWN,)]  # the enterprises grant has no row filter
    _, _, rows, _ = query(warehouse, f"""
        SELECT 乡镇代码 FROM {ENTERPRISES} EXCEPT SELECT 乡镇代码 FROM {PEOPLE}""")
    assert rows == [(OTHER_TOWN,)]


def test_other_joins_and_clauses(warehouse):
    for sql in (
        f"SELECT count(*) FROM {PEOPLE} p LEFT JOIN {ENTERPRISES} e USING (乡镇代码) WHERE p.姓名 = '居民0'",
        f"SELECT count(*) FROM {PEOPLE} p SEMI JOIN {ENTERPRISES} e ON e.乡镇代码 = p.乡镇代码",
        f"SELECT count(*) FROM {PEOPLE} NATURAL JOIN {ENTERPRISES}",
        f"SELECT count(*) FROM {PEOPLE} p, {ENTERPRISES} e WHERE p.乡镇代码 = e.乡镇代码 AND e.注册资本 < 50",
        f"SELECT DISTINCT ON (乡镇代码) 乡镇代码, 姓名 FROM {PEOPLE} ORDER BY 乡镇代码, 姓名",
        f"SELECT * EXCLUDE (公民身份号码) FROM {PEOPLE} ORDER BY 姓名 LIMIT 2 OFFSET 1",
        f"FROM {PEOPLE} SELECT 姓名 WHERE 姓名 LIKE '居民1%' AND 出生日期 BETWEEN DATE '1960-01-01' "
        f"AND current_date AND 姓名 IS NOT NULL",
        f"SELECT CASE WHEN 出生日期 < DATE '1980-01-01' THEN '老' ELSE '少' END AS 组, count(*) FROM {PEOPLE} GROUP BY ALL",
        f"SELECT string_agg(姓名, ',') FILTER (WHERE 姓名 LIKE '居民1_'), median(year(出生日期)), "
        f"strftime(min(出生日期), '%Y年%m月'), date_diff('day', min(出生日期), max(出生日期)), "
        f"date_trunc('month', max(出生日期)), date_part('year', max(出生日期)), "
        f"CAST(round(avg(year(出生日期)), 1) AS VARCHAR) FROM {PEOPLE}",
        f"SELECT upper(姓名), substr(姓名, 1, 2), lpad(姓名, 8, '*'), concat_ws('-', 姓名, 乡镇代码), "
        f"coalesce(NULLIF(姓名, ''), '无'), strpos(姓名, '民'), length(姓名) FROM {PEOPLE} LIMIT 1",
        f"SELECT p.号码, p.名 FROM {PEOPLE} AS p(号码, 名) WHERE p.乡镇代码 = '{TOWN}' LIMIT 3",
        f"WITH t(名, 镇) AS (SELECT 姓名, 乡镇代码 FROM {PEOPLE}) SELECT t.名 FROM t WHERE t.镇 = '{TOWN}' LIMIT 3",
        f"SELECT count(*) FROM (SELECT 姓名 FROM {PEOPLE})",
        f"SELECT p.姓名, e.企业名称 FROM {PEOPLE} p ASOF JOIN {ENTERPRISES} e "
        f"ON p.乡镇代码 = e.乡镇代码 AND year(p.出生日期) >= e.注册资本 LIMIT 3",
        f"SELECT p.姓名, e.企业名称 FROM {PEOPLE} p POSITIONAL JOIN {ENTERPRISES} e LIMIT 3",
        f"SELECT 姓名 FROM {PEOPLE} WHERE 乡镇代码 IN (SELECT 乡镇代码 FROM {ENTERPRISES}) "
        f"AND 出生日期 > (SELECT min(出生日期) FROM {PEOPLE}) AND 姓名 NOT ILIKE '%x%' LIMIT 3",
        f"(SELECT 姓名 FROM {PEOPLE} LIMIT 2) UNION ALL (SELECT 企业名称 FROM {ENTERPRISES} LIMIT 2) ORDER BY 1",
        f"SELECT 乡镇代码, count(*) FROM {PEOPLE} GROUP BY ROLLUP (乡镇代码)",
    ):
        query(warehouse, sql)  # runs without refusal or error


# --- what a grant keeps from the consumer -------------------------------------------------------


@pytest.mark.parametrize("sql", [
    f"SELECT 姓名, 乡镇代码 FROM {PEOPLE}",
    f"SELECT 姓名, 乡镇代码 FROM {PEOPLE} WHERE 乡镇代码 = '{OTHER_TOWN}' OR true",
    f"SELECT 姓名, 乡镇代码 FROM (SELECT * FROM {PEOPLE}) s",
    f"WITH a AS (SELECT * FROM {PEOPLE}) SELECT 姓名, 乡镇代码 FROM a",
    f"SELECT p.姓名, p.乡镇代码 FROM {ENTERPRISES} e JOIN {PEOPLE} p ON p.乡镇代码 = e.乡镇代码 OR true",
    f"SELECT 姓名, 乡镇代码 FROM {PEOPLE} UNION ALL SELECT 姓名, 乡镇代码 FROM {PEOPLE} WHERE 乡镇代码 <> '{TOWN}'",
    f"SELECT 姓名, 乡镇代码 FROM {PEOPLE} p RIGHT JOIN (SELECT '{OTHER_TOWN}' AS t) x ON p.乡镇代码 = x.t",
    f"SELECT 姓名, (SELECT max(乡镇代码) FROM {PEOPLE}) FROM {PEOPLE} WHERE EXISTS "
    f"(SELECT 1 FROM {PEOPLE} q WHERE q.乡镇代码 = '{OTHER_TOWN}') OR true",
])
def test_row_filter_is_enforced(warehouse, sql):
    _, _, rows, _ = query(warehouse, sql)
    hidden = {r[0] for r in oracle(warehouse, f"SELECT 姓名 FROM v_people WHERE 乡镇代码 = '{OTHER_TOWN}'")}
    assert all(r[0] is None or r[0] not in hidden for r in rows)
    assert all(r[1] in (TOWN, None) for r in rows)


def test_other_towns_are_not_even_counted(warehouse):
    assert query(warehouse, f"SELECT count(*) FROM {PEOPLE} WHERE 乡镇代码 = '{OTHER_TOWN}'")[2] == [(0,)]
    assert query(warehouse, f"SELECT count(DISTINCT 乡镇代码) FROM {PEOPLE}")[2] == [(1,)]


@pytest.mark.parametrize("sql", [
    f"SELECT 公民身份号码 FROM {PEOPLE} WHERE 公民身份号码 LIKE '1306821990%'",
    f"SELECT 姓名 FROM {PEOPLE} WHERE 公民身份号码 = '130682199001010011'",
    f"SELECT 姓名 FROM {PEOPLE} WHERE substr(公民身份号码, 7, 8) = '19900101'",
    f"SELECT 姓名 FROM {PEOPLE} WHERE substr(公民身份号码, 7, 4) = '1990'",
    f"SELECT 姓名 FROM {PEOPLE} WHERE starts_with(公民身份号码, '13068219')",
])
def test_filters_on_masked_columns_see_the_mask(warehouse, sql):
    assert query(warehouse, sql)[2] == []


@pytest.mark.parametrize("sql", [
    f"SELECT 公民身份号码, count(*) FROM {PEOPLE} GROUP BY 公民身份号码",
    f"SELECT 公民身份号码 FROM {PEOPLE} ORDER BY 公民身份号码 DESC",
    f"SELECT min(公民身份号码), max(公民身份号码), string_agg(公民身份号码, ''), arg_max(公民身份号码, 出生日期) FROM {PEOPLE}",
    f"SELECT first_value(公民身份号码) OVER (ORDER BY 出生日期), lead(公民身份号码) OVER () FROM {PEOPLE}",
    f"SELECT replace(公民身份号码, '*', ''), reverse(公民身份号码), upper(公民身份号码) FROM {PEOPLE}",
    f"SELECT e.法定代表人身份号码, p.公民身份号码 FROM {ENTERPRISES} e JOIN {PEOPLE} p "
    f"ON p.公民身份号码 = e.法定代表人身份号码",
    f"WITH ids AS (SELECT 公民身份号码 AS id FROM {PEOPLE}) SELECT id || '' FROM ids ORDER BY id",
    f"SELECT * FROM {PEOPLE} p, {ENTERPRISES} e WHERE e.注册资本 = 10 LIMIT 50",
])
def test_no_clear_id_appears_anywhere(warehouse, sql):
    _, _, rows, _ = query(warehouse, sql)
    assert rows
    assert_no_clear_id(warehouse, rows)


@pytest.mark.parametrize("sql", [
    f"SELECT 户籍地址 FROM {PEOPLE}",
    f"SELECT p.户籍地址 FROM {PEOPLE} p",
    f'SELECT "户籍地址" FROM {PEOPLE}',
    f"SELECT 姓名 FROM {PEOPLE} WHERE 户籍地址 LIKE '定州%'",
    f"SELECT 姓名 FROM {PEOPLE} ORDER BY 户籍地址",
    f"SELECT count(*) FROM {PEOPLE} GROUP BY 户籍地址",
    f"SELECT * EXCLUDE (户籍地址) FROM {PEOPLE}",
    f"SELECT s.户籍地址 FROM (SELECT * FROM {PEOPLE}) s",
    f"WITH c AS (SELECT * FROM {PEOPLE}) SELECT 户籍地址 FROM c",
    f"SELECT 姓名 FROM {PEOPLE} p WHERE EXISTS (SELECT 1 FROM {ENTERPRISES} e WHERE e.企业名称 = p.户籍地址)",
    f"SELECT {PEOPLE}.户籍地址 FROM {PEOPLE}",
])
def test_ungranted_column_is_refused_by_name(warehouse, sql):
    with pytest.raises(SqlRefused) as refused:
        rewrite(sql, resolve)
    assert "户籍地址" in refused.value.message


def test_ungranted_column_of_the_second_table(warehouse):
    with pytest.raises(SqlRefused) as refused:
        rewrite(f"SELECT e.联系电话 FROM {PEOPLE} p JOIN {ENTERPRISES} e ON e.乡镇代码 = p.乡镇代码", resolve)
    assert "联系电话" in refused.value.message and ENTERPRISES in refused.value.message


@pytest.mark.parametrize("table", ["public_security.criminal_records", "market.enterprise_tax", "v_people",
                                   "nosuchschema.nosuchtable", "household_register"])
def test_ungranted_or_unknown_table_is_refused_by_name(warehouse, table):
    with pytest.raises(SqlRefused) as refused:
        rewrite(f"SELECT count(*) FROM {table}", resolve)
    assert table in refused.value.message


def test_row_cap(warehouse):
    con = warehouse[0]
    sql = rewrite(f"SELECT 姓名 FROM {PEOPLE} ORDER BY 姓名", resolve).sql
    names, rows, truncated = run(con, sql, max_rows=10, timeout_s=10)
    assert names == ["姓名"] and len(rows) == 10 and truncated
    assert rows == sorted(rows)
    _, rows, truncated = run(con, sql, max_rows=1000, timeout_s=10)
    assert len(rows) == 1000 and not truncated


def test_timeout_interrupts_and_the_connection_still_works(warehouse):
    con = warehouse[0]
    sql = rewrite(f"""SELECT count(*) FROM {PEOPLE} a, {PEOPLE} b, {PEOPLE} c, {PEOPLE} d
                      WHERE a.姓名 || b.姓名 || c.姓名 <> d.姓名""", resolve).sql
    started = time.perf_counter()
    with pytest.raises(SqlTimeout) as refused:
        run(con, sql, max_rows=10, timeout_s=0.2)
    assert time.perf_counter() - started < 5
    assert "0.2" in refused.value.message
    assert run(con, "SELECT 42", max_rows=1, timeout_s=5) == (["42"], [(42,)], False)


def test_execution_errors_become_refusals(warehouse):
    sql = rewrite(f"SELECT 姓名 + 1 FROM {PEOPLE}", resolve).sql
    with pytest.raises(SqlRefused) as refused:
        run(warehouse[0], sql, max_rows=10, timeout_s=5)
    assert "failed" in refused.value.message and not isinstance(refused.value, SqlTimeout)
    # A failed conversion is refused without quoting the value that failed.
    sql = rewrite(f"SELECT CAST(姓名 AS INTEGER) FROM {PEOPLE}", resolve).sql
    with pytest.raises(SqlRefused) as refused:
        run(warehouse[0], sql, max_rows=10, timeout_s=5)
    assert "居民" not in refused.value.message and "TRY_CAST" in refused.value.message


def test_row_filter_applies_before_the_consumers_expressions(warehouse):
    # 居民1 lives in the other town: an expression that fails on that row alone must never run on it,
    # or the failure would tell the consumer that the row exists.
    hidden = oracle(warehouse, "SELECT 乡镇代码 FROM v_people WHERE 姓名 = '居民1'")
    assert hidden == [(OTHER_TOWN,)]
    _, _, rows, _ = query(warehouse, f"""SELECT count(*) FROM {PEOPLE}
        WHERE CAST(CASE WHEN 姓名 = '居民1' THEN 'x' ELSE '1' END AS INTEGER) = 1""")
    assert rows == [(1000,)]
    _, _, rows, _ = query(warehouse, f"""SELECT count(*) FROM {PEOPLE} p JOIN {ENTERPRISES} e
        ON CAST(CASE WHEN p.姓名 = '居民1' THEN 'x' ELSE '1' END AS INTEGER) = 1 AND e.注册资本 = 10""")
    assert rows == [(1000,)]


@pytest.mark.parametrize("sql", ["SELECT FROM WHERE", "SELECT (1", "SELECT 'unterminated", "", "   "])
def test_unparseable_text_is_refused_clearly(sql):
    with pytest.raises(SqlRefused) as refused:
        rewrite(sql, resolve)
    assert refused.value.message and "Traceback" not in refused.value.message


SQL_WORDS = ["SELECT", "FROM", "WHERE", "WITH", "AS", "(", ")", ",", ";", "*", "'x'", '"y"', "1", "--",
             "/*", "*/", "UNION", "JOIN", "ON", "read_csv", "COPY", "TO", "$1", "?", "->", "::", "[", "]",
             "{", "}", ":", ".", PEOPLE, "姓名", "户籍地址", "p", "LATERAL", "RECURSIVE", "ORDER BY", "LIMIT"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(SQL_WORDS), max_size=40).map(" ".join)))
def test_any_text_is_either_rewritten_or_refused(text):
    try:
        rewritten = rewrite(text, resolve)
    except SqlRefused as refused:
        assert isinstance(refused.message, str) and refused.message
    else:
        assert rewritten.sql and set(rewritten.tables) <= set(SCOPES)


def test_long_union_chains_are_flat_not_deep(warehouse):
    sql = " UNION ALL ".join(f"SELECT 姓名 FROM {PEOPLE} WHERE 姓名 = '居民{i}'" for i in range(0, 200, 2))
    _, _, rows, _ = query(warehouse, sql)
    assert len(rows) == 100


def test_sandbox(warehouse):
    con, folder, _ = warehouse
    with pytest.raises(duckdb.PermissionException):
        con.execute("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")
    assert con.execute("SELECT count(*) FROM v_people").fetchone() == (2000,)
    # The sandbox alone still lets COPY write into an allowed folder: the gate is what refuses it.
    con.execute(f"COPY (SELECT 1) TO '{folder}/sandbox-only.csv'")
    assert (folder / "sandbox-only.csv").exists()


# --- escape attempts -----------------------------------------------------------------------------

ESCAPES = [
    # reading files, by function and by replacement scan
    "SELECT * FROM read_csv('/etc/passwd')",
    "SeLeCt * FrOm ReAd_CsV('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "FROM '/etc/passwd'",
    "SELECT * FROM 'https://example.com/data.csv'",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM read_parquet('{dir}/people.parquet')",
    "SELECT * FROM parquet_scan('{dir}/people.parquet')",
    "SELECT * FROM read_json('{dir}/x.json')",
    "SELECT * FROM iceberg_scan('{dir}')",
    "SELECT * FROM sqlite_scan('{dir}/x.db', 't')",
    "SELECT * FROM postgres_scan('host=127.0.0.1', 'public', 't')",
    'SELECT "read_csv"(\'/etc/passwd\')',
    "SELECT content FROM read_text('/etc/passwd') UNION ALL SELECT 姓名 FROM " + PEOPLE,
    # writing files and changing the engine
    "COPY (SELECT * FROM v_people) TO '{dir}/marker.csv'",
    "COPY v_people TO '{dir}/marker.csv'",
    "EXPORT DATABASE '{dir}/marker'",
    "IMPORT DATABASE '{dir}'",
    "ATTACH '{dir}/marker.db' AS m",
    "DETACH m",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA version",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "CALL duckdb_settings()",
    "USE memory",
    "CHECKPOINT",
    "VACUUM",
    "CREATE TABLE marker AS SELECT * FROM v_people",
    "CREATE TEMP VIEW marker AS SELECT * FROM v_people",
    "CREATE MACRO marker(a) AS a",
    "CREATE SECRET marker (TYPE s3, KEY_ID 'k', SECRET 's')",
    "INSERT INTO v_people SELECT * FROM v_people",
    "UPDATE v_people SET 姓名 = 'x'",
    "DELETE FROM v_people",
    "DROP VIEW v_people",
    # several statements, some hidden
    "SELECT 1; DROP VIEW v_people",
    "SELECT 1 /* harmless */; COPY (SELECT 1) TO '{dir}/marker.csv'",
    "SELECT 1 -- comment\n; DROP VIEW v_people",
    "(SELECT 1); CREATE TABLE marker AS SELECT 1",
    # the engine's own tables and functions
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_tables",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM pg_catalog.pg_class",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM pragma_table_info('v_people')",
    "SELECT getenv('HOME')",
    "SELECT current_setting('enable_external_access')",
    "SELECT * FROM query('SELECT * FROM v_people')",
    "SELECT * FROM query_table('v_people')",
    "SELECT nextval('marker')",
    "SELECT * FROM range(10)",
    "SELECT * FROM " + PEOPLE + ", generate_series(1, 100000000)",
    # around the grant
    "SELECT * FROM v_people",
    "SELECT * FROM memory.main.v_people",
    "SELECT * FROM memory.public_security.household_register",
    "SELECT 姓名 FROM " + PEOPLE + " UNION SELECT 姓名 FROM public_security.criminal_records",
    "SELECT s.户籍地址 FROM (SELECT 姓名 FROM " + PEOPLE + ") s",
    "SELECT p.联系电话 FROM " + ENTERPRISES + " p",
    'SELECT * FROM "public_security"."household_register""; DROP VIEW v_people; --"',
    "SELECT * FROM public_security.household_register\u200b",
    "SELECT * FROM ｐｕｂｌｉｃ_security.household_register",
    "SELECT extract(\"year FROM 出生日期); DROP VIEW v_people; --\" FROM 出生日期) FROM " + PEOPLE,
    "SELECT * FROM " + PEOPLE + " p JOIN read_csv('/etc/passwd') x ON true",
    "SELECT (SELECT count(*) FROM read_text('/etc/passwd'))",
    "SELECT * FROM " + PEOPLE + " p, LATERAL (SELECT * FROM read_csv('/etc/passwd'))",
    "SELECT * FROM " + PEOPLE + " AT (VERSION => 1)",
    "SELECT * FROM " + PEOPLE + " USING SAMPLE 10%",
    "SELECT * FROM " + PEOPLE + " TABLESAMPLE 10%",
    # shapes outside the allowlist
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "SELECT list_transform([1, 2], x -> x + 1)",
    "SELECT list_filter(list(姓名), x -> x LIKE '%') FROM " + PEOPLE,
    "PIVOT " + PEOPLE + " ON 乡镇代码 USING count(*)",
    "SELECT * FROM " + PEOPLE + " PIVOT (count(*) FOR 乡镇代码 IN ('1'))",
    "SELECT 姓名 FROM " + PEOPLE + " WHERE 乡镇代码 = $1",
    "SELECT 姓名 FROM " + PEOPLE + " WHERE 乡镇代码 = ?",
    "SUMMARIZE " + PEOPLE,
    "DESCRIBE " + PEOPLE,
    "SHOW TABLES",
    "SELECT 姓名 COLLATE nocase FROM " + PEOPLE,
    "SELECT {'a': 姓名} FROM " + PEOPLE,
    "SELECT p FROM " + PEOPLE + " p",
    "SELECT COLUMNS('.*') FROM " + PEOPLE,
    "SELECT CAST(姓名 AS STRUCT(a INT)) FROM " + PEOPLE,
    "SELECT random()",
    # too long, too deep
    "SELECT 1" + " + 1" * 6000,
    "SELECT " + "(" * 200 + "1" + ")" * 200,
    "SELECT " + "(SELECT " * 40 + "1" + ")" * 40,
    "SELECT " + "abs(" * 60 + "1" + ")" * 60,
    "SELECT " + "NOT " * 2000 + "true",
]


def test_at_least_thirty_escapes():
    assert len(ESCAPES) >= 30 and len(set(ESCAPES)) == len(ESCAPES)


@pytest.mark.parametrize("attempt", ESCAPES)
def test_escape_attempt_is_refused(warehouse, attempt):
    con, folder, _ = warehouse
    sql = attempt.replace("{dir}", str(folder))
    with pytest.raises(SqlRefused) as refused:
        rewrite(sql, resolve)
    assert refused.value.message and isinstance(refused.value.message, str)
    assert not any(p.name.startswith("marker") for p in folder.iterdir())
    assert con.execute("SELECT count(*) FROM v_people").fetchone() == (2000,)  # nothing dropped


def test_limits_name_themselves():
    with pytest.raises(SqlRefused, match="too long"):
        rewrite("SELECT 1" + " " * 30, resolve, max_length=20)
    with pytest.raises(SqlRefused, match="nested too deeply"):
        rewrite("SELECT " + "(" * 30 + "1" + ")" * 30, resolve)


# --- speed ----------------------------------------------------------------------------------------


def test_rewrite_speed():
    """Prints rewrite()'s cost per query and, as the baseline run alongside, SQLGlot's bare parse of
    the same text (tests never assert on timings)."""
    import sqlglot

    sql = (f"SELECT p.姓名, p.公民身份号码, e.企业名称, e.统一社会信用代码, e.注册资本 FROM {PEOPLE} AS p "
           f"JOIN {ENTERPRISES} e ON e.法定代表人身份号码 = p.公民身份号码 "
           f"WHERE p.乡镇代码 = '{TOWN}' AND p.出生日期 >= DATE '1980-01-01' ORDER BY e.注册资本 DESC LIMIT 100")

    def per_call_ms(fn, n=300):
        for _ in range(30):
            fn()
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - started) / n * 1000)
        return best

    gate = per_call_ms(lambda: rewrite(sql, resolve))
    parse = per_call_ms(lambda: sqlglot.parse_one(sql, read="duckdb"))
    print(f"\nrewrite: {gate:.3f} ms per query ({len(sql)} characters); "
          f"sqlglot parse alone: {parse:.3f} ms; ratio {gate / parse:.2f}")
