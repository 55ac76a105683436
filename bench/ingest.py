"""Ingest benchmark: loading a 1,000,000-row, 12-column GBK CSV of Dingzhou's enterprise register
(企业登记基本信息, made by `shuzheng.demo.population` with 3% faults) through `shuzheng ingest` with its
12 quality rules, against two baselines measured in the same run on the same file: the DuckDB ceiling and
Great Expectations running the equivalent 12 expectations.

    .venv/bin/python bench/ingest.py [--rows 1000000] [--skip-ge] [--skip-5m] [--keep DIR]

Measured, each on the same file:
  - generation: `enterprise_batches(rows, encoding="gbk")` written by `write_csv` (gen_rows_per_s).
  - the load (`measure_load`, the data-load pipeline's part): `shuzheng ingest FILE --resource CODE --json`
    in a subprocess against a fresh temporary SHUZHENG_HOME (load_rows_per_s); then the same on a
    5,000,000-row file with its peak RSS, the process and its children sampled (peak_rss_mb_5m).
  - the DuckDB ceiling: DuckDB reads no GBK (its encodings extension cannot be installed offline), so the
    file is transcoded to UTF-8 with Python's codec, streaming, then
    `COPY (SELECT * FROM read_csv(..., all_varchar=true)) TO 'x.parquet'`; duckdb_rows_per_s is rows over
    both steps (duckdb_transcode_s + duckdb_copy_s). It reads and writes, and checks nothing.
  - Great Expectations 1.x, pandas engine, in its own virtual environment (bench/.venv-ge, built on first
    use from the hash-pinned bench/requirements-ge.lock; GE is not in the project's lock), in a subprocess:
    `pandas.read_csv(encoding="gbk", dtype=str)` (ge_read_s), then one validation of the 12-expectation
    suite with result_format BASIC (counts, ge_validate_s). ge_rows_per_s is validation only (the
    DataFrame already in memory: the harder bar for the load, which also reads the file);
    ge_read_validate_rows_per_s counts the read too. ratio_to_ge = load_rows_per_s / ge_rows_per_s.
    GE runs offline: GX_ANALYTICS_ENABLED=False, analytics disabled on the context, and every socket
    connect refused and counted (ge_network_attempts, expected 0).

The table is the enterprise register because it has exactly the 12 data items of its catalog resource, so
the file loads into 企业登记基本信息 as it is; the people table has 14 (its first 12 would leave two items of
定州市户籍人口基本信息 without a column). `--table people` is there for comparison. The 12 expectations
(`ge_suite()`): for enterprises, 统一社会信用代码 not null, unique and of GB 32100 shape (GE has no check
character expectation), 单位名称 and 法定代表人姓名 not null, 企业类型 / 登记机关 / 经营状态 in their sets,
注册资本 numeric, 成立日期 a YYYY-MM-DD date and not after 2025-12-31, 核准日期 >= 成立日期.

To rebuild the GE environment by hand (bench/.venv-ge is git-ignored):
    rm -rf bench/.venv-ge && python3.11 -m venv bench/.venv-ge \\
        && bench/.venv-ge/bin/pip install --require-hashes -r bench/requirements-ge.lock
and to update the lock after editing bench/requirements-ge.txt:
    pip-compile --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links \\
        --output-file=bench/requirements-ge.lock bench/requirements-ge.txt

Prints one JSON line on stdout; progress goes to stderr. The Great Expectations part runs this same file
with the GE environment's Python (`--ge-worker`), so the imports at the top are the standard library only.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
GE_VENV = ROOT / "bench" / ".venv-ge"
GE_LOCK = ROOT / "bench" / "requirements-ge.lock"
ENCODING = "gbk"
RESOURCE_NAME = {"enterprise": "企业登记基本信息", "people": "定州市户籍人口基本信息"}  # the catalog resource to load into
PEAK_ROWS = 5_000_000


def log(msg: str) -> None:
    print(f"[bench/ingest] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# Helpers for the load measurement
# ----------------------------------------------------------------------------------------------------


def run_sampled(cmd: list[str], *, env: dict | None = None, cwd: str | Path | None = None,
                interval: float = 0.05, timeout: float | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Runs cmd to its end, sampling the resident memory of the process and all its descendants every
    `interval` seconds; returns (the completed process with its stdout and stderr as text, the peak of
    that sum in MiB). The sum counts pages shared between the processes once per process, so it errs high;
    a child that lives shorter than `interval` can be missed. Raises subprocess.TimeoutExpired after
    `timeout` seconds (the process tree is killed)."""
    import psutil

    peak = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = psutil.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            total = 0
            try:
                for p in [proc] + proc.children(recursive=True):
                    try:
                        total += p.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            except psutil.NoSuchProcess:
                pass
            peak = max(peak, total)
            if proc.poll() is not None:
                break
            if deadline is not None and time.monotonic() > deadline:
                for p in proc.children(recursive=True) + [proc]:
                    try:
                        p.kill()
                    except psutil.NoSuchProcess:
                        pass
                proc.wait()
                raise subprocess.TimeoutExpired(cmd, timeout)
            time.sleep(interval)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, proc.returncode, out.read().decode("utf-8", "replace"),
                                           err.read().decode("utf-8", "replace"))
    return done, peak / 2**20


def peak_rss_mb(cmd: list[str], **kwargs) -> float:
    """Peak resident memory in MiB of cmd and its children while it runs (see `run_sampled`, which takes
    the same keyword arguments and also returns the output). Raises CalledProcessError when cmd fails."""
    done, peak = run_sampled(cmd, **kwargs)
    done.check_returncode()
    return peak


_HOME: dict = {}


def _bench_home(table: str) -> tuple[dict, str]:
    """A fresh platform home (migrate, the demo catalog and rules, no demo data), prepared once per run;
    returns its environment and the resource code. The row-count guard is switched off there, since the
    1M and 5M files replace each other."""
    if table not in _HOME:
        home = Path(tempfile.mkdtemp(prefix="shuzheng-bench-home-"))
        env = {**os.environ, "SHUZHENG_HOME": str(home), "SHUZHENG_DEMO_DATA": "0"}
        env.pop("DATABASE_URL", None)
        for step in (["migrate", "-v", "0"], ["demo", "load", "-q"]):
            subprocess.run([sys.executable, "-m", "shuzheng", *step], env=env, check=True, capture_output=True)
        script = ("import django, os, json; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
                  "from shuzheng.catalog.models import Resource\nfrom shuzheng.ingest import services\n"
                  "from shuzheng.org.services import Actor\n"
                  f"r = Resource.objects.get(published__name={RESOURCE_NAME[table]!r})\n"
                  "services.update_settings(Actor.cli(), r.code, {'max_count_change': None})\nprint(r.code)")
        code = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                              text=True).stdout.strip().splitlines()[-1]
        _HOME[table] = (env, code, home)
    env, code, _home = _HOME[table]
    return env, code


def measure_load(csv_path: Path, rows: int, table: str = "enterprise") -> dict:
    """`shuzheng ingest FILE --resource CODE --mode replace --json` in a subprocess, its peak memory sampled.
    load_rows_per_s counts the load itself (the Load row's start to finish: staging, conversion, every
    check, quarantine, Parquet, the Iceberg commit); load_process_s is the whole process, Python and
    Django start-up included."""
    env, code = _bench_home(table)
    cmd = [sys.executable, "-m", "shuzheng", "ingest", str(csv_path), "--resource", code, "--mode", "replace",
           "--json"]
    started = time.perf_counter()
    proc, peak = run_sampled(cmd, env=env)
    process_s = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"shuzheng ingest failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    seconds = result["seconds"]
    timings = result.get("timings") or {}
    return {"load_rows_per_s": round(rows / seconds), "load_seconds": round(seconds, 2),
            "load_timings": timings,
            # The checking phase alone (conversion and every check over the staged rows, into one table):
            # the part of the load that does what Great Expectations does.
            "load_check_rows_per_s": round(rows / timings["checking"]) if timings.get("checking") else None,
            "load_process_s": round(process_s, 2), "peak_rss_mb": round(peak, 1), "loaded": result["loaded"],
            "quarantined": result["quarantined"], "rejected": result["rejected"], "checks": result.get("checks"),
            "snapshot_id": result["snapshot_id"]}


# ----------------------------------------------------------------------------------------------------
# Generation and the DuckDB ceiling (project environment)
# ----------------------------------------------------------------------------------------------------


def generate(path: Path, table: str, rows: int, seed: int, faults: float) -> dict:
    from shuzheng.demo import population

    make = population.enterprise_batches if table == "enterprise" else population.people_batches
    columns = population.ENTERPRISE_COLUMNS if table == "enterprise" else population.PEOPLE_COLUMNS[:12]
    stream = make(rows, seed=seed, faults=faults, encoding=ENCODING)
    t0, c0 = time.perf_counter(), time.process_time()
    written = population.write_csv(path, stream, encoding=ENCODING, columns=columns)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert written == rows
    return {"gen_seconds": round(seconds, 3), "gen_rows_per_s": round(rows / seconds),
            "gen_cpu_rows_per_s": round(rows / cpu),  # this process's CPU time: less sensitive to a busy machine
            "csv_mb": round(path.stat().st_size / 2**20, 1), "columns": len(columns),
            "fault_counts": stream.fault_counts}


def measure_duckdb(csv_path: Path, rows: int, workdir: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    try:  # is GBK readable without the encodings extension? (not on 2.0 offline: recorded, not assumed)
        con.execute("SELECT * FROM read_csv(?, encoding = 'gbk', all_varchar = true) LIMIT 1", [str(csv_path)])
        native = True
    except duckdb.Error:
        native = False
    utf8, parquet = workdir / "ceiling.utf8.csv", workdir / "ceiling.parquet"
    t0 = time.perf_counter()
    decoder = codecs.getincrementaldecoder(ENCODING)()
    with open(csv_path, "rb") as src, open(utf8, "wb") as dst:
        while chunk := src.read(16 << 20):
            dst.write(decoder.decode(chunk).encode("utf-8"))
        dst.write(decoder.decode(b"", final=True).encode("utf-8"))
    t1 = time.perf_counter()
    quoted = lambda p: "'" + str(p).replace("'", "''") + "'"  # noqa: E731
    con.execute(f"COPY (SELECT * FROM read_csv({quoted(utf8)}, all_varchar = true, header = true)) "
                f"TO {quoted(parquet)} (FORMAT parquet)")
    t2 = time.perf_counter()
    counted = con.execute(f"SELECT count(*) FROM read_parquet({quoted(parquet)})").fetchone()[0]
    assert counted == rows, (counted, rows)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.close()
    utf8.unlink()
    parquet.unlink()
    return {"duckdb_rows_per_s": round(rows / (t2 - t0)), "duckdb_transcode_s": round(t1 - t0, 3),
            "duckdb_copy_s": round(t2 - t1, 3), "duckdb_copy_rows_per_s": round(rows / (t2 - t1)),
            "duckdb_threads": threads, "duckdb_version": duckdb.__version__, "duckdb_reads_gbk": native}


# ----------------------------------------------------------------------------------------------------
# Great Expectations (its own environment, in a subprocess)
# ----------------------------------------------------------------------------------------------------


def ge_suite(table: str) -> list[dict]:
    """The 12 expectations equivalent to the load's 12 rules, as (GE class name, arguments)."""
    from shuzheng.demo import population as pop

    def e(kind: str, as_date: bool = False, **kwargs) -> dict:
        # as_date: GE compares a date range only on a datetime column (it turns the string bounds into
        # dates), so the worker parses the column first, inside the timed validation.
        return {"type": kind, "kwargs": kwargs, "as_date": as_date}

    as_of = pop.AS_OF.isoformat()
    if table == "enterprise":
        types = sorted({t[0] for t in pop._CORP_TYPES} | {"个体工商户", "农民专业合作社"})
        return [
            e("ExpectColumnValuesToNotBeNull", column="统一社会信用代码"),
            e("ExpectColumnValuesToBeUnique", column="统一社会信用代码"),
            e("ExpectColumnValuesToMatchRegex", column="统一社会信用代码",
              regex=r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"),
            e("ExpectColumnValuesToNotBeNull", column="单位名称"),
            e("ExpectColumnValuesToBeInSet", column="企业类型", value_set=types),
            e("ExpectColumnValuesToNotBeNull", column="法定代表人姓名"),
            e("ExpectColumnValuesToMatchRegex", column="注册资本", regex=r"^\d+(\.\d+)?$"),
            e("ExpectColumnValuesToMatchStrftimeFormat", column="成立日期", strftime_format="%Y-%m-%d"),
            e("ExpectColumnValuesToBeBetween", column="成立日期", min_value="1949-10-01", max_value=as_of, as_date=True),
            e("ExpectColumnValuesToBeInSet", column="登记机关", value_set=[pop.REGISTRATION_AUTHORITY]),
            e("ExpectColumnValuesToBeInSet", column="经营状态", value_set=list(pop.BUSINESS_STATUS)),
            e("ExpectColumnPairValuesAToBeGreaterThanB", column_A="核准日期", column_B="成立日期", or_equal=True),
        ]
    return [
        e("ExpectColumnValuesToNotBeNull", column="公民身份号码"),
        e("ExpectColumnValuesToBeUnique", column="公民身份号码"),
        e("ExpectColumnValuesToMatchRegex", column="公民身份号码", regex=r"^\d{17}[\dX]$"),
        e("ExpectColumnValuesToNotBeNull", column="姓名"),
        e("ExpectColumnValuesToBeInSet", column="性别", value_set=["1", "2"]),
        e("ExpectColumnValuesToBeInSet", column="民族", value_set=list(pop.ETHNIC_CODES)),
        e("ExpectColumnValuesToMatchStrftimeFormat", column="出生日期", strftime_format="%Y-%m-%d"),
        e("ExpectColumnValuesToBeBetween", column="出生日期", min_value="1900-01-01", max_value=as_of, as_date=True),
        e("ExpectColumnValuesToMatchRegex", column="户籍地址", regex=r"^河北省定州市"),
        e("ExpectColumnValuesToMatchRegex", column="户号", regex=r"^\d{10}$"),
        e("ExpectColumnValuesToBeInSet", column="与户主关系", value_set=list(pop.RELATIONS)),
        e("ExpectColumnValuesToBeInSet", column="婚姻状况", value_set=list(pop.MARITAL_CODES)),
    ]


def ensure_ge_venv() -> Path:
    python = GE_VENV / "bin" / "python"
    if not python.exists():
        log(f"building {GE_VENV.relative_to(ROOT)} from {GE_LOCK.relative_to(ROOT)} (a few minutes, once)")
        subprocess.run([sys.executable, "-m", "venv", str(GE_VENV)], check=True)
        subprocess.run([str(GE_VENV / "bin" / "pip"), "install", "-q", "--require-hashes", "-r", str(GE_LOCK)],
                       check=True)
    return python


def measure_ge(csv_path: Path, table: str, rows: int, workdir: Path) -> dict:
    python = ensure_ge_venv()
    suite = workdir / "ge-suite.json"
    suite.write_text(json.dumps(ge_suite(table), ensure_ascii=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GX_", "GE_"))}
    env.update(GX_ANALYTICS_ENABLED="False", PYTHONNOUSERSITE="1")
    done = subprocess.run([str(python), os.path.abspath(__file__), "--ge-worker", str(csv_path), str(suite)],
                          env=env, check=True, timeout=3600, stdout=subprocess.PIPE, text=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop("rows") == rows
    out["ge_rows_per_s"] = round(rows / out["ge_validate_s"])
    out["ge_read_validate_rows_per_s"] = round(rows / (out["ge_read_s"] + out["ge_validate_s"]))
    return out


def ge_worker(csv_path: str, suite_path: str) -> dict:
    """Runs inside bench/.venv-ge: read the CSV with pandas, validate the suite once, report the times."""
    import socket

    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    attempts: list = []

    def refuse(self, address, *args):
        attempts.append(str(address))
        raise OSError("network disabled by bench/ingest.py")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    t0 = time.perf_counter()
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    import_s = time.perf_counter() - t0
    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    import datetime as dt

    specs = json.loads(Path(suite_path).read_text(encoding="utf-8"))
    suite = context.suites.add(gx.ExpectationSuite(name="ingest"))
    dated = []
    for spec in specs:
        kwargs = dict(spec["kwargs"])
        if spec["as_date"]:
            dated.append(kwargs["column"])
            kwargs["column"] += "__date"
            kwargs.update({k: dt.datetime.fromisoformat(kwargs[k]) for k in ("min_value", "max_value")})
        suite.add_expectation(getattr(gx.expectations, spec["type"])(**kwargs))

    t0 = time.perf_counter()
    frame = pd.read_csv(csv_path, encoding="gbk", dtype=str, keep_default_na=False, na_values=[""])
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for column in dated:
        frame[column + "__date"] = pd.to_datetime(frame[column], format="%Y-%m-%d", errors="coerce")
    batch = (context.data_sources.add_pandas("bench").add_dataframe_asset("csv")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame}))
    result = batch.validate(suite, result_format="BASIC")
    validate_s = time.perf_counter() - t0
    unexpected, errors = {}, 0
    for r in result.results:
        kwargs = r.expectation_config.kwargs
        column = kwargs.get("column") or f"{kwargs.get('column_A')},{kwargs.get('column_B')}"
        unexpected[f"{r.expectation_config.type.removeprefix('expect_')}({column})"] = r.result.get("unexpected_count")
        errors += any(isinstance(v, dict) and v.get("raised_exception") for v in (r.exception_info or {}).values())
    return {"rows": len(frame), "ge_read_s": round(read_s, 3), "ge_validate_s": round(validate_s, 3),
            "ge_import_s": round(import_s, 3), "ge_version": gx.__version__, "ge_pandas_version": pd.__version__,
            "ge_result_format": "BASIC", "ge_expectations": len(result.results),
            "ge_expectations_failed": sum(not r.success for r in result.results), "ge_expectation_errors": errors,
            "ge_unexpected": unexpected, "ge_network_attempts": len(attempts)}


# ----------------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the file (default 1000000)")
    parser.add_argument("--table", choices=("enterprise", "people"), default="enterprise",
                        help="enterprise register (12 columns, default) or the first 12 people columns")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--faults", type=float, default=0.03, help="share of faulty rows (default 0.03)")
    parser.add_argument("--skip-ge", action="store_true", help="no Great Expectations baseline")
    parser.add_argument("--skip-5m", action="store_true", help=f"no {PEAK_ROWS:,}-row peak-memory run")
    parser.add_argument("--keep", metavar="DIR", help="write the files into DIR and leave them there")
    parser.add_argument("--ge-worker", nargs=2, metavar=("CSV", "SUITE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ge_worker:
        print(json.dumps(ge_worker(*args.ge_worker), ensure_ascii=False), flush=True)
        return
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))

    workdir = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="shuzheng-bench-ingest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"bench": "ingest", "cpus": os.cpu_count(), "loadavg_start": round(os.getloadavg()[0], 2),
                 "rows": args.rows, "table": args.table, "resource": RESOURCE_NAME[args.table],
                 "encoding": ENCODING, "seed": args.seed, "faults": args.faults}
    try:
        csv_path = workdir / f"{args.table}-{args.rows}.{ENCODING}.csv"
        log(f"generating {args.rows:,} rows into {csv_path}")
        out.update(generate(csv_path, args.table, args.rows, args.seed, args.faults))
        log(f"  {out['gen_rows_per_s']:,} rows/s, {out['csv_mb']} MiB")

        log("load (shuzheng ingest)")
        load: dict | None
        try:
            load = measure_load(csv_path, args.rows, args.table)
        except NotImplementedError as exc:
            log(f"  skipped: {exc}")
            load = None
        out["load_rows_per_s"] = None
        if load:
            out.update({k if k.startswith("load_") or k == "peak_rss_mb" else f"load_{k}": v
                        for k, v in load.items()})
            out["peak_rss_mb_1m"] = out.pop("peak_rss_mb", None)
            log(f"  {out['load_rows_per_s']:,} rows/s")

        log("DuckDB ceiling: GBK -> UTF-8 (Python codec), then COPY ... TO parquet")
        out.update(measure_duckdb(csv_path, args.rows, workdir))
        log(f"  {out['duckdb_rows_per_s']:,} rows/s (transcode {out['duckdb_transcode_s']} s, "
            f"copy {out['duckdb_copy_s']} s)")

        if not args.skip_ge:
            log("Great Expectations (pandas), 12 expectations, in bench/.venv-ge")
            out.update(measure_ge(csv_path, args.table, args.rows, workdir))
            log(f"  validate {out['ge_rows_per_s']:,} rows/s, read + validate "
                f"{out['ge_read_validate_rows_per_s']:,} rows/s, network attempts {out['ge_network_attempts']}")

        out["peak_rss_mb_5m"] = None
        if not args.skip_5m and load:
            big = workdir / f"{args.table}-{PEAK_ROWS}.{ENCODING}.csv"
            log(f"generating {PEAK_ROWS:,} rows for the peak-memory run")
            generate(big, args.table, PEAK_ROWS, args.seed, args.faults)
            big_load = measure_load(big, PEAK_ROWS, args.table)
            out["peak_rss_mb_5m"] = big_load.get("peak_rss_mb")
            out["load_5m_rows_per_s"] = big_load.get("load_rows_per_s")
            if not args.keep:
                big.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        for _env, _code, home in _HOME.values():
            shutil.rmtree(home, ignore_errors=True)

    load_rate = out.get("load_rows_per_s")
    ratio = lambda base: round(load_rate / base, 3) if load_rate and base else None  # noqa: E731
    out["ratio_to_duckdb"] = ratio(out.get("duckdb_rows_per_s"))
    out["ge_rows_per_s"] = out.get("ge_rows_per_s")
    out["ge_rows_per_s_measures"] = "validation only, the DataFrame already read"
    out["ratio_to_ge"] = ratio(out.get("ge_rows_per_s"))
    out["ratio_to_ge_read_validate"] = ratio(out.get("ge_read_validate_rows_per_s"))
    checks, ge = out.get("load_check_rows_per_s"), out.get("ge_rows_per_s")
    out["ratio_checks_to_ge"] = round(checks / ge, 2) if checks and ge else None
    ceiling = out.get("duckdb_rows_per_s")
    # No load can be faster than the ceiling, so this is the most any whole load could reach against GE.
    out["ratio_ceiling_to_ge"] = round(ceiling / ge, 2) if ceiling and ge else None
    out["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
