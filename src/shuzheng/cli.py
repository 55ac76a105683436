"""The `shuzheng` command. Each subcommand sets Django up and calls a service; nothing here decides
anything a service would. All subcommands honour SHUZHENG_HOME and DATABASE_URL."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shuzheng.settings")
    import django
    from django.utils import translation

    django.setup()
    # Messages follow the operator's locale: SHUZHENG_LANGUAGE, else LANG (zh_CN… → 简体中文), else English.
    lang = os.environ.get("SHUZHENG_LANGUAGE") or ("zh-hans" if os.environ.get("LANG", "").startswith("zh") else "en")
    translation.activate(lang)


def cmd_migrate(args):
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=args.verbosity)


def cmd_demo_load(args):
    from shuzheng.demo.loader import load_demo

    summary = load_demo(progress=not args.quiet, data=not args.catalog_only)
    print(json.dumps(summary, ensure_ascii=False) if args.json else _demo_text(summary))


def _demo_text(summary: dict) -> str:
    lines = [f"Demo data loaded: {summary['regions']} regions, {summary['organizations']} organizations, "
             f"{summary['users']} users, {summary['resources']} catalog resources, "
             f"{summary['data_elements']} data elements.", "", "Demo accounts (password for all: " + summary["password"] + "):"]
    for account in summary["accounts"]:
        lines.append(f"  {account['username']:<18} {account['role']:<16} {account['organization']}")
    lines.append("The three administrators must enrol two-factor authentication at first sign-in.")
    return "\n".join(lines)


def cmd_serve(args):
    from shuzheng.server import serve

    hosts = args.host or ["0.0.0.0", "::"]
    workers = args.workers or min(4, (os.cpu_count() or 1) * 2)
    serve(hosts, args.port, workers, args.threads, with_worker=not args.no_worker)


def cmd_worker(args):
    from django.core.management import call_command

    from shuzheng.sharing import events

    if events.configured_url() != "inprocess":
        # Snapshot events arrive through Redis or NATS: consume them beside the job workers.
        threading.Thread(target=events.run_consumer, args=(threading.Event(),), name="events", daemon=True).start()
    call_command("run_huey", workers=args.workers)


def cmd_events_consume(args):
    """Consume snapshot events from Redis or NATS and create their webhook deliveries, until stopped."""
    from shuzheng.sharing import events

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_a: stop.set())
    handled = events.run_consumer(stop)
    print(f"events handled: {handled}")


def cmd_audit_verify(args):
    from django.utils.translation import gettext as _

    from shuzheng.audit import signing
    from shuzheng.audit.services import verify

    public_key = None
    if args.public_key:
        try:
            with open(args.public_key, encoding="utf-8") as f:
                public_key = signing.parse_public_key(f.read())
        except (OSError, UnicodeDecodeError, signing.SigningKeyError) as exc:
            print(_("error: cannot use the public key %(file)s: %(e)s") % {"file": args.public_key, "e": exc},
                  file=sys.stderr)
            sys.exit(2)
    result = verify(public_key)
    if args.json:
        print(json.dumps(result.as_dict()))
    elif result.intact:
        print(_("audit chain intact: %(n)s records verified in %(s).2f s") % {"n": result.records,
                                                                             "s": result.seconds})
        if result.signed_seq:
            print(_("%(k)s SM2 signatures valid (key %(fp)s%(src)s); the newest covers record %(seq)s, signed "
                    "%(at)s; %(u)s records after it are covered by the chain only")
                  % {"k": result.signatures, "fp": result.key_fingerprint, "seq": result.signed_seq,
                     "at": result.signed_at, "u": result.unsigned,
                     "src": _(", given") if public_key else _(", this home's")})
        else:
            print(_("no SM2 signature of the head yet: all %(n)s records are covered by the chain only "
                    "(shuzheng audit sign)") % {"n": result.records})
    else:
        print(_("AUDIT CHAIN BROKEN at record %(seq)s: %(reason)s") % {"seq": result.first_bad_seq,
                                                                        "reason": result.reason}, file=sys.stderr)
    sys.exit(0 if result.intact else 1)


def cmd_audit_sign(args):
    from django.utils.translation import gettext as _

    from shuzheng.audit import services

    try:
        made = services.sign_head()
    except services.SigningRefused as exc:
        print(_("error: the head was not signed: %(detail)s") % {"detail": exc.detail}, file=sys.stderr)
        sys.exit(1)
    if made is None:
        last = services.latest_signature()
        if last is None:
            print(_("nothing to sign: the audit trail is empty"))
        else:
            print(_("the head has not moved since the signature of record %(seq)s (%(at)s)")
                  % {"seq": last.seq, "at": last.signed_at.isoformat()})
    else:
        print(_("signed the head at record %(seq)s (hash %(h)s…) with key %(fp)s")
              % {"seq": made.seq, "h": made.hash[:16], "fp": made.key_fingerprint})


def cmd_audit_public_key(args):
    from django.utils.translation import gettext as _

    from shuzheng.audit import signing
    from shuzheng.core.crypto import DecryptionError

    try:
        key = signing.keypair()
    except (signing.SigningKeyError, DecryptionError) as exc:
        print(_("error: %(e)s") % {"e": exc}, file=sys.stderr)
        sys.exit(1)
    text = signing.public_pem(key.public)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(_("Wrote the public key %(fp)s to %(file)s.") % {"fp": key.fingerprint, "file": args.out},
              file=sys.stderr)
    else:
        print(text, end="")


def _passphrase(args) -> str:
    """The backup passphrase: --passphrase-file, else SHUZHENG_BACKUP_PASSPHRASE (never an argument: other
    users could read it in the process list)."""
    if args.passphrase_file:
        try:
            with open(args.passphrase_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            print(f"error: cannot read {args.passphrase_file}: {exc.strerror}", file=sys.stderr)
            sys.exit(2)
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
    else:
        text = os.environ.get("SHUZHENG_BACKUP_PASSPHRASE", "")
    if not text:
        print("error: give the passphrase in SHUZHENG_BACKUP_PASSPHRASE or with --passphrase-file", file=sys.stderr)
        sys.exit(2)
    return text


class _Steps:
    """Progress lines on stderr: elapsed time and what is happening."""

    def __init__(self, quiet: bool):
        import time

        self.quiet, self.time, self.start = quiet, time, time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"  [{self.time.monotonic() - self.start:6.1f} s] {message}", file=sys.stderr, flush=True)


def cmd_backup(args):
    from django.utils.translation import gettext as _

    from shuzheng.security import backup

    try:
        manifest = backup.create_backup(args.file, _passphrase(args), progress=_Steps(args.quiet))
    except backup.BackupError as exc:
        print(_("error: %(e)s") % {"e": exc}, file=sys.stderr)
        sys.exit(1)
    if args.json:
        print(json.dumps(backup.summary_of(manifest, args.file), ensure_ascii=False))
    else:
        print(_("Backup written: %(file)s, %(mb).1f MiB, %(n)s files, %(t)s tables (%(r)s rows), audit trail up to "
                "record %(seq)s; SHA-256 %(sha)s")
              % {"file": args.file, "mb": manifest["archive_bytes"] / (1 << 20), "n": len(manifest["files"]),
                 "t": len(manifest["tables"]), "r": sum(manifest["tables"].values()), "seq": manifest["audit"]["seq"],
                 "sha": manifest["archive_sha256"]})
        if not manifest["master_key_in_archive"]:
            print(_("note: the master key comes from SHUZHENG_MASTER_KEY and is not in the archive; keep it: the "
                    "restored keys open only with it"), file=sys.stderr)


def _restore_preflight(args):
    """Before the platform starts in the target (which would create files there): the target must be empty
    and the whole archive must check out, or nothing is touched."""
    from pathlib import Path

    from shuzheng.security import backup

    home = Path(os.environ.get("SHUZHENG_HOME", "var")).resolve()
    problem = backup.home_problem(home)
    if not problem and os.environ.get("DATABASE_URL"):
        problem = backup.postgres_problem(os.environ["DATABASE_URL"])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    args.passphrase = _passphrase(args)
    try:
        args.verified = backup.verify_archive(args.file, args.passphrase, progress=_Steps(args.quiet))
    except backup.BackupError as exc:
        print(f"error: {exc}; nothing was restored", file=sys.stderr)
        sys.exit(1)


def cmd_restore(args):
    from django.utils.translation import gettext as _

    from shuzheng.security import backup

    try:
        summary = backup.restore_backup(args.file, args.passphrase, verified=args.verified,
                                        progress=_Steps(args.quiet))
    except backup.BackupError as exc:
        print(_("error: %(e)s; nothing was restored") % {"e": exc}, file=sys.stderr)
        sys.exit(1)
    verdict = summary["verify"]
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(_("Restored %(n)s files and %(t)s tables (%(r)s rows) in %(s).1f s; Iceberg tables: %(i)s.")
              % {"n": summary["files"], "t": len(summary["tables"]), "r": sum(summary["tables"].values()),
                 "s": summary["seconds"], "i": ", ".join(f"{k} @{v['snapshot_id']} ({v['rows']} rows)"
                                                         for k, v in summary["iceberg"].items()) or "-"})
        if verdict["intact"]:
            print(_("audit chain intact: %(n)s records; newest signature covers record %(seq)s")
                  % {"n": verdict["records"], "seq": verdict["signed_seq"]})
    if not verdict["intact"]:
        print(_("AUDIT CHAIN BROKEN at record %(seq)s: %(reason)s") % {"seq": verdict["first_bad_seq"],
                                                                        "reason": verdict["reason"]}, file=sys.stderr)
        sys.exit(1)


def cmd_apikey_create(args):
    from shuzheng.core.errors import ServiceError
    from shuzheng.org import services

    actor = services.Actor.cli()
    try:
        system = services.find_system(actor, args.system)
        key, raw = services.create_api_key(actor, system.code, args.label, args.days)
    except ServiceError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        sys.exit(2)
    print(raw)
    print(f"(system {system.code}, key {key.prefix}…, expires {key.expires_at:%Y-%m-%d}; "
          "this is the only time the key is shown)", file=sys.stderr)


def _actor_as(username: str | None):
    """The command's actor: the trusted operator, or with --as the named user, whose permissions apply."""
    from django.utils.translation import gettext as _

    from shuzheng.org.models import User
    from shuzheng.org.services import Actor

    if not username:
        return Actor.cli()
    user = User.objects.select_related("organization").filter(username=username, is_active=True).first()
    if user is None:
        print(_("error: no active user %(u)s") % {"u": username}, file=sys.stderr)
        sys.exit(2)
    return Actor(user=user, ip="127.0.0.1")


def cmd_catalog_import(args):
    from django.utils.translation import gettext as _
    from django.utils.translation import ngettext

    from shuzheng.catalog import excel
    from shuzheng.core.errors import ServiceError

    actor = _actor_as(args.as_user)

    def progress(done, total):
        if not args.quiet and (done % 100 == 0 or done == total) and total >= 100:
            print(_("  rows: %(done)s/%(total)s") % {"done": done, "total": total}, file=sys.stderr, flush=True)

    try:
        created = excel.import_workbook(actor, args.file, progress=progress)
    except ServiceError as exc:
        print(_("error: %(detail)s") % {"detail": exc.detail}, file=sys.stderr)
        for error in exc.errors:
            # Workbook errors name a cell (资源!C5) and their message starts with the column title.
            print(f"{error.field} {error.message}" if "!" in error.field else f"{error.field}: {error.message}",
                  file=sys.stderr)
        sys.exit(2)
    for resource in created:
        print(f"{resource.code}\t{resource.pending.name}")
    print(ngettext("%(n)s resource registered as a draft.", "%(n)s resources registered as drafts.", len(created))
          % {"n": len(created)}, file=sys.stderr)


def cmd_catalog_export(args):
    from django.utils.translation import gettext as _

    from shuzheng.catalog import excel
    from shuzheng.core.errors import ServiceError

    try:
        data = excel.template_workbook() if args.template else excel.export_workbook(_actor_as(args.as_user),
                                                                                     q=args.query)
    except ServiceError as exc:
        print(_("error: %(detail)s") % {"detail": exc.detail}, file=sys.stderr)
        sys.exit(2)
    with open(args.file, "wb") as out:
        out.write(data)
    print(_("Wrote %(file)s.") % {"file": args.file}, file=sys.stderr)


def _fail(exc) -> None:
    from django.utils.translation import gettext as _

    print(_("error: %(detail)s") % {"detail": exc.detail}, file=sys.stderr)
    for error in exc.errors:
        print(f"  {error.field}: {error.message}", file=sys.stderr)
    sys.exit(2)


class _Progress:
    """One line on a terminal that says which phase a load is in and for how long."""

    def __init__(self, enabled: bool):
        import time

        self.enabled, self.time, self.start = enabled, time, time.monotonic()

    def __call__(self, phase: str) -> None:
        if self.enabled:
            elapsed = self.time.monotonic() - self.start
            print(f"\r  [{elapsed:6.1f} s] {phase:<12}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled:
            print(file=sys.stderr)


def _mapping(pairs: list[str]) -> dict:
    return dict(pair.split("=", 1) for pair in pairs or [] if "=" in pair)


def cmd_ingest(args):
    from shuzheng.core.errors import ServiceError
    from shuzheng.ingest import services

    actor = _actor_as(args.as_user)
    progress = _Progress(sys.stderr.isatty() and not args.json)
    try:
        load = services.ingest_file(actor, args.resource, args.file, mode=args.mode, encoding=args.encoding,
                                    format=args.format, sheet=args.sheet, mapping=_mapping(args.map),
                                    progress=progress)
    except ServiceError as exc:
        progress.done()
        _fail(exc)
    progress.done()
    result = {"load": str(load.id), "state": load.state, "loaded": load.loaded, "quarantined": load.quarantined,
              "unreadable": load.unreadable, "rejected": load.state != "committed", "snapshot_id": load.snapshot_id,
              "rows_after": load.rows_after, "scores": load.scores, "error": load.error,
              "seconds": round((load.finished_at - load.created_at).total_seconds(), 3),
              "checks": load.lineage.get("checks"), "timings": load.lineage.get("timings")}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(_load_text(load))
    sys.exit(0 if load.state == "committed" else 1)


def _load_text(load) -> str:
    from django.utils.translation import gettext as _

    lines = [_("%(state)s: %(loaded)s rows loaded, %(quarantined)s quarantined, %(unreadable)s unreadable.")
             % {"state": load.get_state_display(), "loaded": load.loaded, "quarantined": load.quarantined,
                "unreadable": load.unreadable}]
    if load.snapshot_id:
        lines.append(_("Snapshot %(id)s; the table now holds %(rows)s rows.") % {"id": load.snapshot_id,
                                                                                  "rows": load.rows_after})
    if load.error:
        lines.append(load.error)
    for finding in load.findings[:20]:
        lines.append(f"  {finding['count']:>8}  {finding['item']}: {finding['message']}"
                     + ("" if finding["blocking"] else " " + _("(warning)")))
    return "\n".join(lines)


def cmd_quality_report(args):
    from shuzheng.core.errors import ServiceError
    from shuzheng.quality import reports

    try:
        report = reports.resource_report(_actor_as(args.as_user), args.resource)
    except ServiceError as exc:
        _fail(exc)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, default=str))
    else:
        print(reports.as_text(report))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shuzheng", description="Shuzheng (数政) government data platform")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.add_argument("-v", "--verbosity", type=int, default=1)
    p.set_defaults(func=cmd_migrate)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo_command", required=True)
    p = demo.add_parser("load", help="load the Dingzhou demo (deterministic, idempotent)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--catalog-only", action="store_true",
                   help="organizations, accounts and the catalog, without the generated warehouse data")
    p.set_defaults(func=cmd_demo_load)

    p = sub.add_parser("serve", help="serve the platform (gunicorn) and run the job worker")
    p.add_argument("--host", action="append", help="address to listen on; repeatable (default: 0.0.0.0 and ::)")
    p.add_argument("--port", type=int, default=int(os.environ.get("SHUZHENG_PORT", 8000)))
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: 2 per core, at most 4)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker")
    p.add_argument("--no-worker", action="store_true", help="do not start the background-job worker")
    p.set_defaults(func=cmd_serve)

    events_cmd = sub.add_parser("events", help="snapshot events for webhooks").add_subparsers(
        dest="events_command", required=True)
    p = events_cmd.add_parser("consume", help="consume events from Redis or NATS (SHUZHENG_EVENTS) until stopped")
    p.set_defaults(func=cmd_events_consume)

    p = sub.add_parser("worker", help="run the background-job worker alone")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_worker)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    p = audit.add_parser("verify", help="recompute the SM3 chain and check the head's SM2 signatures; exit 1 naming "
                                        "the first bad record or signature")
    p.add_argument("--json", action="store_true")
    p.add_argument("--public-key", metavar="FILE", help="check the signatures against this exported public key "
                                                        "instead of the home's")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("sign", help="sign the chain head with the SM2 audit key now (if it moved)")
    p.set_defaults(func=cmd_audit_sign)
    p = audit.add_parser("public-key", help="print (or write) the SM2 public key that checks the head signatures")
    p.add_argument("--out", metavar="FILE", help="write it to FILE")
    p.set_defaults(func=cmd_audit_public_key)

    p = sub.add_parser("backup", help="write a consistent, SM4-encrypted archive of the database, warehouse and keys")
    p.add_argument("file", metavar="FILE", help="the archive to write (must not exist), e.g. shuzheng-20260101.szb")
    p.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE "
                                                              "(default: SHUZHENG_BACKUP_PASSPHRASE)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="rebuild an empty home (and empty database) from an archive, then verify")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE "
                                                              "(default: SHUZHENG_BACKUP_PASSPHRASE)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_restore, preflight=_restore_preflight)

    apikey = sub.add_parser("apikey", help="application-system API keys").add_subparsers(dest="apikey_command", required=True)
    p = apikey.add_parser("create", help="issue a key for an application system and print it once")
    p.add_argument("--system", required=True, help="the system's code or name")
    p.add_argument("--label", default="")
    p.add_argument("--days", type=int, default=90)
    p.set_defaults(func=cmd_apikey_create)

    catalog = sub.add_parser("catalog", help="the data resource catalog").add_subparsers(dest="catalog_command",
                                                                                        required=True)
    p = catalog.add_parser("import", help="register every resource of a catalog workbook as a draft, or none")
    p.add_argument("file", metavar="FILE.xlsx")
    p.add_argument("--as", dest="as_user", metavar="USERNAME", help="import as this user (their permissions apply)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_catalog_import)
    p = catalog.add_parser("export", help="write the catalog (or an empty template) as a workbook")
    p.add_argument("file", metavar="FILE.xlsx")
    p.add_argument("--template", action="store_true", help="write the empty workbook with its 说明 sheet")
    p.add_argument("--as", dest="as_user", metavar="USERNAME", help="export what this user may see")
    p.add_argument("--query", default="", help="only resources matching this search")
    p.set_defaults(func=cmd_catalog_export)

    p = sub.add_parser("ingest", help="load a file into a resource's warehouse table (one snapshot or nothing)")
    p.add_argument("file", metavar="FILE", help="CSV (UTF-8, GBK, GB18030), XLSX, JSON, JSON Lines or Parquet")
    p.add_argument("--resource", required=True, metavar="CODE", help="catalog resource code, e.g. 101001000/000001")
    p.add_argument("--mode", default="append", choices=["append", "upsert", "replace"])
    p.add_argument("--encoding", choices=["utf-8", "gbk", "gb18030"], help="CSV encoding (default: detected)")
    p.add_argument("--format", choices=["csv", "xlsx", "json", "jsonl", "parquet"], help="default: by suffix")
    p.add_argument("--sheet", help="XLSX sheet (default: the first)")
    p.add_argument("--map", action="append", metavar="ITEM=COLUMN", help="source column for a data item")
    p.add_argument("--as", dest="as_user", metavar="USERNAME", help="load as this user (their permissions apply)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(func=cmd_ingest)

    quality = sub.add_parser("quality", help="data quality").add_subparsers(dest="quality_command", required=True)
    p = quality.add_parser("report", help="a resource's quality scores, trend and open findings")
    p.add_argument("resource", metavar="CODE")
    p.add_argument("--as", dest="as_user", metavar="USERNAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quality_report)

    from shuzheng.harvest.cli import register as harvest_commands
    from shuzheng.security.cli import register as security_commands

    security_commands(sub)
    harvest_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "preflight", None):
        args.preflight(args)  # checks that must run before the platform starts (and writes) in its home
    _django()
    args.func(args)
