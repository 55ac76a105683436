"""Key rotation (`shuzheng keys rotate`), without downtime.

A data-key rotation makes a new active key (the old one turns `retiring`), then rewrites the resource's table
from its current snapshot: values opened under whichever key sealed them, sealed again under the new key, with
new blind indexes, committed as one replacing snapshot through the same compare-and-swap as a load. Until that
commit, and while the gateway's serving store of the new snapshot is being built, calls keep answering from
the previous snapshot, whose key is still there. A load committing first makes the rewrite start again from
the new snapshot. A rotation whose process died stays `running` and is resumed by the next `keys rotate`
with the key it had made. A retiring key is destroyed (retired) once no snapshot kept in the table's history
was written under it.

A master-key rotation writes a new master key, keeps the old one as keys/master-<fingerprint>.key, re-wraps
every data key and every wrapped key file, then removes the old master. Interrupted, it is finished by running
it again: whatever is still wrapped under an older master is re-wrapped first.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.apps import apps
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit.services import record
from shuzheng.catalog.models import MountKind, Resource
from shuzheng.core.errors import Conflict, FieldError, ValidationFailed
from shuzheng.ingest.pipeline import fault_point
from shuzheng.security import fieldcrypt, keys
from shuzheng.security.models import DataKey, KeyState, Rotation
from shuzheng.warehouse import lake
from shuzheng.warehouse.lake import quote_literal as lit

ATTEMPTS = 5


def _resources(code: str | None):
    qs = Resource.objects.select_related("published").filter(mount_kind=MountKind.TABLE, published__isnull=False)
    if code:
        qs = qs.filter(code=code)
        if not qs.exists():
            raise ValidationFailed.of("resource", _("No published warehouse resource %(code)s.") % {"code": code})
    return [r for r in qs if fieldcrypt.encrypted_items(r.published.items.all())]


def rotate(actor, code: str | None = None, progress=lambda text: None) -> list[dict]:
    """Rotates the data key of one resource, or of every resource with encrypted items; finishes rotations
    left running first. Returns one summary per resource."""
    done = []
    for resource in _resources(code):
        rotation = Rotation.objects.filter(resource=resource, state=Rotation.State.RUNNING).first()
        if rotation is None:
            rotation = _begin(actor, resource)
        else:
            record(actor, "keys.rotation_resumed", rotation, summary={"resource": resource.code,
                                                                       "key": rotation.new_key_id})
        progress(_("%(code)s: re-encrypting under key %(key)s") % {"code": resource.code, "key": rotation.new_key_id})
        done.append(_finish(actor, resource, rotation))
    return done


def _begin(actor, resource) -> Rotation:
    with transaction.atomic():
        old = DataKey.objects.select_for_update().filter(resource=resource, state=KeyState.ACTIVE).first()
        if old is not None:
            old.state = KeyState.RETIRING
            old.save(update_fields=["state"])
        new = fieldcrypt.new_key(resource)
        rotation = Rotation.objects.create(resource=resource, old_key=old, new_key=new)
        record(actor, "keys.rotation_started", rotation, summary={
            "resource": resource.code, "old_key": old.id if old else None, "new_key": new.id})
    return rotation


def _finish(actor, resource, rotation: Rotation) -> dict:
    items = list(resource.published.items.order_by("position"))
    cipher = fieldcrypt.cipher_for(resource, items)
    cipher.reload()
    if cipher.active_kid != rotation.new_key_id:
        raise Conflict(_("The active key of %(code)s is not this rotation's; run keys rotate again.")
                       % {"code": resource.code}, [FieldError("resource", _("Key changed."))])
    encrypted = fieldcrypt.encrypted_items(items)
    table = lake.ensure_table(resource.mount_target, items, encrypted)
    snapshot_id, rows = None, 0
    for attempt in range(ATTEMPTS):
        table.refresh()
        parent = table.current_snapshot()
        if parent is None:
            break
        try:
            snapshot_id, rows = _rewrite(table, items, cipher, parent, f"rotation-{rotation.id}-{attempt}", rotation)
            break
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise
    with transaction.atomic():
        rotation.state, rotation.finished_at = Rotation.State.DONE, timezone.now()
        rotation.snapshot_id, rotation.rows = snapshot_id, rows
        rotation.save()
        if snapshot_id is not None:
            from shuzheng.warehouse.models import Table

            Table.objects.filter(resource=resource).update(current_snapshot_id=snapshot_id, rows=rows)
        record(actor, "keys.rotation_done", rotation, summary={
            "resource": resource.code, "snapshot": snapshot_id, "rows": rows, "key": rotation.new_key_id})
    if snapshot_id is not None:
        from shuzheng.sharing import serving

        serving.prebuild(resource.code, snapshot_id)
    retired = retire_unused(actor, resource)
    return {"resource": resource.code, "key": rotation.new_key_id, "snapshot_id": snapshot_id, "rows": rows,
            "retired": retired}


def _rewrite(table, items, cipher, parent, load_id: str, rotation: Rotation) -> tuple[int, int]:
    """One attempt: the parent snapshot's rows, every encrypted item opened and sealed again under the active
    key; committed as a replacing snapshot. Values still in clear (an item classified for encryption after it
    was loaded) are sealed too."""
    con = lake.duck()
    folder = lake.load_dir(table, load_id)
    try:
        lake.view(con, "current", table, items, parent, cipher=cipher, legacy_clear=True)
        select, names = cipher.sealed_select([i.name for i in items])
        ids = lake.field_ids(table)
        field_ids = "{" + ", ".join(f"{lit(n)}: {ids[n]}" for n in names) + "}"
        path = folder / "part-0.parquet"
        con.execute(f"COPY (SELECT {select} FROM current) TO {lit(str(path))} (FORMAT parquet, FIELD_IDS {field_ids})")
        rows = con.execute(f"SELECT count(*) FROM read_parquet({lit(str(path))})").fetchall()[0][0]
        fault_point("SHUZHENG_FAULT_ROTATION", folder)
        snapshot_id = lake.commit(table, [path], replace=True, properties={
            "shuzheng.rotation": str(rotation.id), fieldcrypt.KIDS_PROPERTY: str(cipher.active_kid)})
        return snapshot_id, rows
    except BaseException:
        lake.discard_files(table.location(), load_id)
        raise
    finally:
        con.close()


def retire_unused(actor, resource) -> list[int]:
    """Destroys the retiring keys of `resource` that no snapshot in its table's history was written under."""
    table = lake.open_table(resource.mount_target)
    used = set()
    for snapshot in (table.snapshots() if table is not None else []):
        used.update(fieldcrypt.kids_of(snapshot))
    retired = []
    with transaction.atomic():
        for key in DataKey.objects.select_for_update().filter(resource=resource, state=KeyState.RETIRING):
            if key.id in used:
                continue
            key.state, key.wrapped, key.retired_at = KeyState.RETIRED, None, timezone.now()
            key.save(update_fields=["state", "wrapped", "retired_at"])
            record(actor, "keys.retired", key, summary={"resource": resource.code, "key": key.id})
            retired.append(key.id)
    return retired


# --------------------------------------------------------------------------------------------------
# The master key
# --------------------------------------------------------------------------------------------------

def rotate_master(actor) -> dict:
    if os.environ.get(keys.ENV):
        raise ValidationFailed.of("master", _("The master key comes from %(env)s: rotate it in the key-management "
                                              "system that supplies it.") % {"env": keys.ENV})
    folder = keys.keys_dir()
    unfinished = (DataKey.objects.exclude(wrapped=None).exclude(master=keys.current_fingerprint()).exists()
                  or any(True for _row in _stale_fields(keys.current_fingerprint())))
    if not unfinished:
        old = keys.current_fingerprint()
        _write_key(folder / f"master-{old}.key", (folder / "master.key").read_text())
        _write_key(folder / "master.tmp", os.urandom(keys.MASTER_BYTES).hex() + "\n")
        os.replace(folder / "master.tmp", folder / "master.key")
        keys.forget()
        fieldcrypt.forget()
    current = keys.current_fingerprint()
    rewrapped = 0
    for key in DataKey.objects.exclude(wrapped=None).exclude(master=current):
        purpose = fieldcrypt.purpose(key.id, key.resource_id)
        with transaction.atomic():
            key.wrapped, key.master = keys.wrap(keys.unwrap(key.wrapped, purpose), purpose), current
            key.save(update_fields=["wrapped", "master"])
        rewrapped += 1
    for obj, field, purpose, blob in _stale_fields(current):
        with transaction.atomic():
            setattr(obj, field, keys.wrap(keys.unwrap(blob, purpose), purpose))
            obj.save(update_fields=[field])
        rewrapped += 1
    for name, purpose in keys.WRAPPED_FILES.items():
        path = folder / name
        if path.exists() and keys.wrapped_by(path.read_bytes()) != current:
            _write_key(path.with_suffix(".tmp"), keys.wrap(keys.unwrap(path.read_bytes(), purpose), purpose))
            os.replace(path.with_suffix(".tmp"), path)
            rewrapped += 1
    # An old master goes only when nothing here is still wrapped under it (a wrapped file nobody declared
    # keeps it, and is reported).
    stale = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("master")
             and p.read_bytes()[:4] == keys.MAGIC and keys.wrapped_by(p.read_bytes()) != current]
    removed = []
    if not stale:
        for old in folder.glob("master-*.key"):
            removed.append(old.stem.split("-", 1)[1])
            old.unlink()
    keys.forget()
    record(actor, "keys.master_rotated", None, object_type="security.masterkey", object_id=current,
           summary={"master": current, "rewrapped": rewrapped, "removed": removed, "stale": stale})
    return {"master": current, "rewrapped": rewrapped, "removed": removed, "stale": stale}


def _stale_fields(current: str):
    """(object, field, purpose, blob) for each wrapped database field not yet under the `current` master."""
    for (app, model, field), purpose in keys.WRAPPED_FIELDS.items():
        for obj in apps.get_model(app, model).objects.exclude(**{field: b""}).only("pk", field):
            blob = bytes(getattr(obj, field))
            if keys.wrapped_by(blob) != current:
                yield obj, field, purpose, blob


def _write_key(path: Path, content) -> None:
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
