"""`shuzheng harvest …`: register catalogs to harvest (the province platform, bodies connected on demand,
CKAN sites, DCAT endpoints) and harvest them now."""

from __future__ import annotations

import json
import os

from shuzheng.cli import _fail  # the command line's one way to report a service error (exit 2)


def cmd_harvest_add(args) -> None:
    from shuzheng.core.errors import ServiceError
    from shuzheng.harvest import services
    from shuzheng.org.services import Actor

    data = {"name": args.name, "kind": args.kind, "url": args.url, "organization": args.organization}
    for name in ("interval_minutes", "timeout_s", "max_bytes", "max_pages", "max_datasets"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    # The key is read from a variable or a file, never from the command line (it would sit in `ps`).
    if args.credential_env:
        data["credential"] = os.environ.get(args.credential_env, "")
    elif args.credential_file:
        with open(args.credential_file, encoding="utf-8") as f:
            data["credential"] = f.read().strip()
    try:
        source = services.save_source(Actor.cli(), data)
    except ServiceError as exc:
        _fail(exc)
    print(json.dumps({"source": source.name, "kind": source.kind, "url": source.url,
                      "organization": source.organization.code}, ensure_ascii=False))


def cmd_harvest_run(args) -> None:
    from shuzheng.core.errors import ServiceError
    from shuzheng.harvest import services
    from shuzheng.org.services import Actor

    actor = Actor.cli()
    try:
        names = [args.name] if args.name else [s.name for s in services.list_sources(actor) if s.enabled]
        runs = [services.run(actor, name, full=args.full) for name in names]
    except ServiceError as exc:
        _fail(exc)
    for run in runs:
        print(json.dumps({**services._summary(run.source, run), "problems": run.problems[:20]}, ensure_ascii=False))
    if any(run.state == run.State.FAILED for run in runs):
        raise SystemExit(1)  # the harvest ran and a source failed (its report is above)


def cmd_harvest_list(args) -> None:
    from shuzheng.harvest import services
    from shuzheng.org.services import Actor

    for s in services.list_sources(Actor.cli()):
        last = s.runs.first()
        print(json.dumps({"source": s.name, "kind": s.kind, "url": s.url, "organization": s.organization.code,
                          "enabled": s.enabled, "records": s.records.filter(deleted_at=None).count(),
                          "last_run": last.state if last else None,
                          "last_run_at": last.started_at.isoformat() if last else None}, ensure_ascii=False))


def register(sub) -> None:
    harvest = sub.add_parser("harvest", help="harvest other catalogs (province platform, connected bodies, CKAN, "
                                             "DCAT)").add_subparsers(dest="harvest_command", required=True)
    p = harvest.add_parser("add", help="register a harvest source")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=["shuzheng", "dcat", "ckan"])
    p.add_argument("--url", required=True, help="the platform's address (shuzheng, ckan) or the DCAT document's")
    p.add_argument("--organization", required=True, metavar="CREDIT_CODE",
                   help="the node its datasets are attributed to (province platform or a body connected on demand)")
    p.add_argument("--credential-env", metavar="VAR", help="environment variable holding the API key for the source")
    p.add_argument("--credential-file", metavar="FILE", help="file holding the API key for the source")
    for name in ("interval-minutes", "timeout-s", "max-bytes", "max-pages", "max-datasets"):
        p.add_argument(f"--{name}", type=int)
    p.set_defaults(func=cmd_harvest_add)
    p = harvest.add_parser("run", help="harvest one source (or every enabled one) now")
    p.add_argument("name", nargs="?")
    p.add_argument("--full", action="store_true", help="read the whole catalog, not only what changed")
    p.set_defaults(func=cmd_harvest_run)
    p = harvest.add_parser("list", help="harvest sources and their last runs")
    p.set_defaults(func=cmd_harvest_list)
