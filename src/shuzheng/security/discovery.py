"""Sensitive-data discovery (S1): what a load's data shows about its items, whatever the catalog declares.

Every load (ingest.pipeline.execute, once the `judged` table is built) samples each loaded string or integer
column: up to ``discovery.sample_size`` non-null values, a reservoir sample taken by DuckDB, and counts in
one SQL statement (no Python loop over values) how many of them are

==============  ==================================================================================
id_number       GB 11643 citizen ID numbers: 17 digits and a check character, a real birth date
credit_code     GB 32100 unified social credit codes with a valid check character
bank_card       13 to 19 digits (spaces and hyphens allowed) passing the Luhn check, not an ID number
mobile          mainland mobile numbers 1[3-9]NNNNNNNNN, optionally +86
email           e-mail addresses
plate           Chinese vehicle plates (province, letter, 5 or 6 characters; new-energy included)
name            personal names: a surname of data/surnames.txt and one or two characters (a compound
                surname and one or two), not ending like a place or an organization
address         two or more address words of data/address_words.txt, one below the town or a digit
==============  ==================================================================================

A column is detected as the kind most of its sample matches when that share reaches ``discovery.min_share``
(with at least ``min_values`` matches and enough different values). The policy maps each kind to the
category, level and sensitivity it implies; a detection whose implication is higher than what the item
declares is *flagged*. Findings are stored per load (catalog.DiscoveryFinding); a flagged one holds back
publishing and opening the resource (catalog.services) until a published version declares the item at least
that high. The load itself is never refused: the data is the department's already.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from shuzheng.security import policy

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data"
SCANNED_TYPES = ("string", "integer")
KINDS = policy.KINDS

_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# A value ending like one of these is a place, a unit or a word, not a person (邢邑镇, 高中, 王府井店).
_NOT_NAME_ENDINGS = "镇乡村区县市省州街路巷号店厂局所院站队委会部处科室校馆楼栋港湾岛庄屯场司行社办组中学"


def _words(path: Path) -> list[str]:
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#"):
            continue
        words += [w for w in line.split() if w not in words]
    return words


def _sections(path: Path) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("[") and text.endswith("]"):
            current = text[1:-1]
            continue
        sections.setdefault(current, []).extend(text.split())
    return sections


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _alternation(words) -> str:
    """An RE2 alternation, longest words first (街道 before 街)."""
    import re

    return "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w)))


@functools.cache
def expressions() -> dict[str, str]:
    """kind -> a DuckDB boolean expression over the text value `v` (trimmed, not empty)."""
    surnames = _words(DATA / "surnames.txt")
    single = "".join(s for s in surnames if len(s) == 1)
    compound = [s for s in surnames if len(s) > 1]
    address = _sections(DATA / "address_words.txt")
    every = [w for words in address.values() for w in words]
    local = address.get("local", []) + address.get("street", [])
    han = "[\u4e00-\u9fff]"

    id_sum = " + ".join(f"(ascii(substr(u, {i + 1}, 1)) - 48) * {w}" for i, w in enumerate(_ID_WEIGHTS))
    cc_sum = " + ".join(f"(strpos({_lit(_CC_ALPHABET)}, substr(v, {i + 1}, 1)) - 1) * {w}"
                        for i, w in enumerate(_CC_WEIGHTS))
    digit = "(ascii(substr(reverse(c), i, 1)) - 48)"
    luhn = (f"list_sum(list_transform(range(1, length(c) + 1), lambda i: CASE WHEN i % 2 = 0 "
            f"THEN ({digit} * 2) % 10 + ({digit} * 2) // 10 ELSE {digit} END)) % 10 = 0")
    # CASE evaluates the arithmetic only where the cheap shape test passed (AND may evaluate both sides).
    id_number = (
        "(CASE WHEN regexp_full_match(u, '[0-9]{17}[0-9X]') "
        "THEN TRY_STRPTIME(substr(u, 7, 8), '%Y%m%d') IS NOT NULL AND substr(u, 7, 4) >= '1850' "
        "AND TRY_STRPTIME(substr(u, 7, 8), '%Y%m%d') <= current_date "
        f"AND substr('10X98765432', (({id_sum}) % 11) + 1, 1) = substr(u, 18, 1) ELSE FALSE END)")
    return {
        "id_number": id_number,
        "credit_code": (
            "(CASE WHEN regexp_full_match(v, '[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}') "
            f"THEN substr({_lit(_CC_ALPHABET)}, ((31 - (({cc_sum}) % 31)) % 31) + 1, 1) = substr(v, 18, 1) "
            "ELSE FALSE END)"),
        "bank_card": (f"(CASE WHEN regexp_full_match(c, '[0-9]{{13,19}}') THEN {luhn} AND NOT {id_number} "
                      "ELSE FALSE END)"),
        "mobile": r"regexp_full_match(v, '(\+?86[ -]?)?1[3-9][0-9]{9}')",
        "email": r"regexp_full_match(v, '[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}')",
        "plate": (f"regexp_full_match(u, '[{_PROVINCES}][A-HJ-NP-Z][·• ]?"
                  f"([A-HJ-NP-Z0-9]{{5,6}}|[A-HJ-NP-Z0-9]{{4}}[挂学警港澳])')"),
        "name": (f"((regexp_full_match(v, '[{single}]{han}{{1,2}}') "
                 f"OR regexp_full_match(v, '({_alternation(compound)}){han}{{1,2}}') "
                 f"OR regexp_full_match(v, '{han}{{2,6}}[·•]{han}{{2,8}}')) "
                 f"AND NOT regexp_full_match(v, '.*[{_NOT_NAME_ENDINGS}]'))"),
        "address": (f"(length(v) BETWEEN 6 AND 200 "
                    f"AND len(regexp_extract_all(v, '{_alternation(every)}')) >= 2 "
                    f"AND regexp_matches(v, '[0-9０-９]|{_alternation(local)}'))"),
    }


@dataclass(frozen=True)
class Detection:
    item: str
    kind: str
    sampled: int
    matched: int
    distinct: int

    @property
    def share(self) -> float:
        return self.matched / self.sampled if self.sampled else 0.0


def scan(con, table: str, items) -> list[Detection]:
    """The detections in `table` (a DuckDB table with one column per item name): at most one per column,
    the kind most of its sampled non-null values are, when the policy's thresholds are met."""
    from shuzheng.warehouse.lake import quote_ident as q

    conf = policy.discovery()
    columns = [item.name for item in items if _value(item.data_type) in SCANNED_TYPES]
    if not columns:
        return []
    present = {row[0] for row in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall()}
    columns = [c for c in columns if c in present]
    if not columns:
        return []
    kinds = [k for k in KINDS if k in conf["kinds"]]
    exprs = expressions()
    n = int(conf["sample_size"])
    # The samples are materialized first: a projection over a sampled subquery is pushed below the sample by
    # the optimizer, which would evaluate every detector on every row instead of on the sample.
    # Values are sampled as stored and trimmed afterwards: trimming every row first costs more than the rest
    # of the scan (a load's text columns are already trimmed and never empty; the trim is a safety net).
    samples = " UNION ALL ".join(
        f"SELECT {index} AS col, trim(CAST(x AS VARCHAR)) AS v FROM (SELECT {q(column)} AS x FROM {q(table)} "
        f"WHERE {q(column)} IS NOT NULL) AS s USING SAMPLE reservoir({n} ROWS) REPEATABLE (11)"
        for index, column in enumerate(columns))
    measures = ", ".join(f"count_if({k}), count(DISTINCT CASE WHEN {k} THEN v END)" for k in kinds)
    flags = ", ".join(f"{exprs[k]} AS {k}" for k in kinds)
    con.execute(f"CREATE OR REPLACE TEMP TABLE __discovery_sample AS {samples}")
    try:
        rows = con.execute(
            f"SELECT col, count(*), {measures} FROM (SELECT col, v, {flags} FROM ("
            f"SELECT col, v, upper(v) AS u, regexp_replace(v, '[ -]', '', 'g') AS c FROM __discovery_sample "
            f"WHERE v <> '')) "
            f"GROUP BY col ORDER BY col").fetchall()
    finally:
        con.execute("DROP TABLE IF EXISTS __discovery_sample")
    min_share, min_values = float(conf["min_share"]), int(conf.get("min_values", 1))
    distinct_share, distinct_enough = float(conf.get("distinct_share", 0)), int(conf.get("distinct_enough", 1))
    found = []
    for row in rows:
        column, sampled = columns[row[0]], row[1]
        best = None
        for k_index, kind in enumerate(kinds):
            matched, distinct = row[2 + 2 * k_index], row[3 + 2 * k_index]
            if not sampled or matched < min_values or matched / sampled < min_share:
                continue
            if distinct < min(distinct_enough, distinct_share * matched):
                continue
            if best is None or matched > best.matched:
                best = Detection(column, kind, sampled, matched, distinct)
        if best is not None:
            found.append(best)
    return found


def _value(v) -> str:
    return getattr(v, "value", v) or ""


def implied(kind: str) -> dict:
    conf = policy.discovery()["kinds"][kind]
    return {"subject": conf["subject"], "level": conf["level"], "sensitive": bool(conf.get("sensitive", False))}


def record(con, load_id, items, table: str = "judged") -> list:
    """Scans the load's `judged` table and stores what it found about each item (one DiscoveryFinding per
    detection, `flagged` when the data shows more than the item declares; new flags are audited). Never
    fails the load: a problem here is logged and the load goes on."""
    items = list(items)
    if not items:
        return []
    try:
        detections = scan(con, table, items)
        return save(load_id, items, detections)
    except Exception:  # noqa: BLE001 - discovery informs; it must not turn a good load into a failed one
        log.exception("discovery failed for load %s", load_id)
        return []


def save(load_id, items, detections: list[Detection]) -> list:
    from shuzheng.audit import services as audit
    from shuzheng.catalog import services as catalog
    from shuzheng.catalog.models import DiscoveryFinding, Resource
    from shuzheng.org.services import Actor

    if not detections:
        return []
    version = items[0].version
    resource = Resource.objects.get(pk=version.resource_id)
    declared = catalog._declared(items)  # noqa: SLF001 - the catalog's one reading of what an item declares
    findings = []
    for d in detections:
        mine, shows = declared[d.item], implied(d.kind)
        finding = DiscoveryFinding(
            resource=resource, version=version, load_id=load_id, item=d.item, kind=d.kind,
            share=round(d.share, 4), sampled=d.sampled, matched=d.matched,
            declared_subject=mine["subject"], declared_level=mine["level"], declared_sensitive=mine["sensitive"],
            implied_subject=shows["subject"], implied_level=shows["level"], implied_sensitive=shows["sensitive"])
        finding.flagged = bool(catalog._shortfall(finding, mine))  # noqa: SLF001
        findings.append(finding)
    flagged = [f for f in findings if f.flagged]
    with transaction.atomic():
        DiscoveryFinding.objects.bulk_create(findings)
        if flagged:
            audit.record(Actor(label="discovery", ip="127.0.0.1"), "catalog.discovery_flagged", resource, summary={
                "code": resource.code, "load": str(load_id),
                "items": [{"item": f.item, "kind": f.kind, "share": f.share,
                           "declared": [f.declared_subject, f.declared_level, f.declared_sensitive],
                           "implied": [f.implied_subject, f.implied_level, f.implied_sensitive]} for f in flagged]})
    return findings


def for_load(load_id) -> list:
    """The findings one load recorded, in item order of appearance."""
    from shuzheng.catalog.models import DiscoveryFinding

    return list(DiscoveryFinding.objects.filter(load_id=load_id).order_by("-flagged", "item"))
