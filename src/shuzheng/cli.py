"""The `shuzheng` command. Each subcommand sets Django up and calls a service; nothing here decides
anything a service would. All subcommands honour SHUZHENG_HOME and DATABASE_URL."""

from __future__ import annotations

import argparse
import json
import os
import sys


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

    summary = load_demo(progress=not args.quiet)
    print(json.dumps(summary, ensure_ascii=False) if args.json else _demo_text(summary))


def _demo_text(summary: dict) -> str:
    lines = [f"Demo data loaded: {summary['regions']} regions, {summary['organizations']} organizations, "
             f"{summary['users']} users.", "", "Demo accounts (password for all: " + summary["password"] + "):"]
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

    call_command("run_huey", workers=args.workers)


def cmd_audit_verify(args):
    from shuzheng.audit.services import verify

    result = verify()
    if args.json:
        print(json.dumps(result.as_dict()))
    elif result.intact:
        print(f"audit chain intact: {result.records} records verified in {result.seconds:.2f} s")
    else:
        print(f"AUDIT CHAIN BROKEN at record {result.first_bad_seq}: {result.reason}", file=sys.stderr)
    sys.exit(0 if result.intact else 1)


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
    p.set_defaults(func=cmd_demo_load)

    p = sub.add_parser("serve", help="serve the platform (gunicorn) and run the job worker")
    p.add_argument("--host", action="append", help="address to listen on; repeatable (default: 0.0.0.0 and ::)")
    p.add_argument("--port", type=int, default=int(os.environ.get("SHUZHENG_PORT", 8000)))
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: 2 per core, at most 4)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker")
    p.add_argument("--no-worker", action="store_true", help="do not start the background-job worker")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run the background-job worker alone")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_worker)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    p = audit.add_parser("verify", help="recompute the SM3 chain; exit 1 naming the first bad record")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_verify)

    apikey = sub.add_parser("apikey", help="application-system API keys").add_subparsers(dest="apikey_command", required=True)
    p = apikey.add_parser("create", help="issue a key for an application system and print it once")
    p.add_argument("--system", required=True, help="the system's code or name")
    p.add_argument("--label", default="")
    p.add_argument("--days", type=int, default=90)
    p.set_defaults(func=cmd_apikey_create)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _django()
    args.func(args)
