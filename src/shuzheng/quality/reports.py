"""Quality reports: per load (the Load row's scores and findings) and per resource (the latest scores, the
trend across loads, whether a load is overdue), and the quarantined rows as a file for the department to
fix, with the reason beside each cell."""

from __future__ import annotations

import csv
import io

import duckdb
from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import PatternFill

from shuzheng.audit.services import csv_safe, record
from shuzheng.catalog import services as catalog
from shuzheng.ingest import schedule
from shuzheng.ingest.models import Load
from shuzheng.org.services import Actor
from shuzheng.warehouse.lake import quote_literal

DIMENSIONS = ("completeness", "validity", "uniqueness", "consistency", "timeliness")
TREND_LOADS = 30


def resource_report(actor: Actor, code: str) -> dict:
    resource = catalog.get_resource(actor, code)
    loads = list(Load.objects.filter(resource=resource).exclude(state=Load.State.RUNNING)
                 .order_by("-created_at")[:TREND_LOADS])
    latest = next((l for l in loads if l.scores), None)
    return {
        "resource": resource.code,
        "name": (resource.published or resource.pending).name,
        "update_cycle": (resource.published or resource.pending).update_cycle,
        "overdue": schedule.overdue(resource),
        "last_load_at": latest.finished_at if latest else None,
        "scores": latest.scores if latest else {},
        "findings": latest.findings if latest else [],
        "latest_load": str(latest.id) if latest else None,
        "trend": [{"load": str(l.id), "at": l.finished_at, "state": l.state, "loaded": l.loaded,
                   "quarantined": l.quarantined, "scores": l.scores} for l in reversed(loads)],
    }


def as_text(report: dict) -> str:
    lines = [f"{report['resource']}  {report['name']}"]
    if not report["scores"]:
        return "\n".join(lines + [_("No loads yet.")])
    scores = report["scores"]
    lines.append(_("Overall %(overall)s") % {"overall": scores["overall"]} + "  " + "  ".join(
        f"{d} {scores[d]}" for d in DIMENSIONS))
    if report["overdue"]:
        lines.append(_("OVERDUE: no load within the update cycle."))
    lines.append(_("Trend (oldest first): ") + " ".join(str(t["scores"].get("overall", "-")) for t in report["trend"]))
    for finding in report["findings"][:20]:
        lines.append(f"  {finding['count']:>8}  {finding['item']}: {finding['message']}"
                     + ("" if finding["blocking"] else " " + _("(warning)")))
    return "\n".join(lines)


def _quarantine_rows(path) -> tuple[list[str], list[tuple]]:
    con = duckdb.connect()
    try:
        result = con.execute(f"SELECT * FROM read_parquet({quote_literal(str(path))}) ORDER BY _row")
        return [d[0] for d in result.description], result.fetchall()
    finally:
        con.close()


def quarantine_export(actor: Actor, load_id, fmt: str) -> tuple[str, bytes]:
    """(filename, bytes) of a load's quarantined rows: the source values as received, the source row
    number, and per row every reason; in XLSX each failing cell is also marked and carries its reason."""
    from shuzheng.ingest.services import quarantine_load

    load, path = quarantine_load(actor, load_id)
    columns, rows = _quarantine_rows(path)
    data_columns = [c for c in columns if c not in ("_row", "__reasons", "__raw")]
    header = [_("source row")] + data_columns + [_("reasons"), _("unreadable record")]
    base = f"quarantine-{load.resource.code.replace('/', '-')}-{load.created_at:%Y%m%d%H%M%S}"
    body = []
    for row in rows:
        values = dict(zip(columns, row))
        reasons = values["__reasons"] or []
        text = "；".join(f"{r['item']}: {r['message']}" if r["item"] else r["message"] for r in reasons)
        body.append((values, reasons, [values["_row"]] + [values[c] for c in data_columns] + [text, values["__raw"]]))
    with_record = {"load": str(load.id), "format": fmt, "rows": len(rows)}
    record(actor, "ingest.quarantine_export", load, summary=with_record)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for _values, _reasons, cells in body:
            writer.writerow([csv_safe(c) if c is not None else "" for c in cells])
        return f"{base}.csv", ("\ufeff" + buffer.getvalue()).encode("utf-8")
    book = Workbook(write_only=False)
    sheet = book.active
    sheet.title = _("quarantine")
    sheet.append(header)
    marked = PatternFill("solid", fgColor="FFE0E0")
    position = {c: i + 2 for i, c in enumerate(data_columns)}
    for r, (values, reasons, cells) in enumerate(body, start=2):
        sheet.append([csv_safe(c) if isinstance(c, str) else c for c in cells])
        by_column: dict[str, list[str]] = {}
        for reason in reasons:
            by_column.setdefault(reason["item"], []).append(reason["message"])
        for item, messages in by_column.items():
            column = position.get(load.mapping.get(item, item))
            if column:
                cell = sheet.cell(row=r, column=column)
                cell.fill = marked
                cell.comment = Comment("\n".join(messages), "Shuzheng")
    out = io.BytesIO()
    book.save(out)
    return f"{base}.xlsx", out.getvalue()

