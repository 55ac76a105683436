"""`shuzheng keys …`: data keys and the master key."""

from __future__ import annotations

import json
import sys


def cmd_keys_rotate(args) -> None:
    from shuzheng.core.errors import ServiceError
    from shuzheng.org.services import Actor
    from shuzheng.security import rotation

    actor = Actor.cli()
    try:
        if args.master:
            result = rotation.rotate_master(actor)
        else:
            result = rotation.rotate(actor, args.resource, progress=lambda text: print(text, file=sys.stderr))
    except ServiceError as exc:
        print(f"error: {exc.detail}" + "".join(f"\n  {e.field}: {e.message}" for e in exc.errors), file=sys.stderr)
        raise SystemExit(1)
    print(json.dumps(result, ensure_ascii=False))


def cmd_keys_list(args) -> None:
    from shuzheng.security.models import DataKey

    rows = [{"key": k.id, "resource": k.resource.code, "state": k.state, "master": k.master,
             "created_at": k.created_at.isoformat(), "retired_at": k.retired_at.isoformat() if k.retired_at else None}
            for k in DataKey.objects.select_related("resource")]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        print(f"{r['key']:>6}  {r['resource']:<18} {r['state']:<9} master {r['master']}  {r['created_at'][:19]}")


def register(sub) -> None:
    """Adds this app's subcommands to the `shuzheng` parser."""
    keys = sub.add_parser("keys", help="encryption keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("rotate", help="re-encrypt tables under new data keys (or re-wrap them under a new master "
                                       "key) while the platform runs; resumes an interrupted rotation")
    p.add_argument("--resource", help="only this resource code (default: every resource with encrypted items)")
    p.add_argument("--master", action="store_true", help="rotate the master key instead")
    p.set_defaults(func=cmd_keys_rotate)
    p = keys.add_parser("list", help="data keys and their states")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_list)
