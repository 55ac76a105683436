"""Envelope keys (GB/T 39786 key management). One master key wraps every other key the platform keeps:
resources' data keys (security.models.DataKey), the audit signing key, backup material.

The master key is 16 random bytes (an SM4 key), taken from SHUZHENG_MASTER_KEY (32 hex digits) when the
environment supplies it (a key-management system or an HSM's export), else from SHUZHENG_HOME/keys/master.key,
created 0600 on first use in a 0700 folder. It is never stored in the database, so a copy of the database
alone opens nothing. Each wrapped blob names the master that wrapped it by fingerprint; after a master
rotation the old master stays as keys/master-<fingerprint>.key until every blob is re-wrapped.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from django.conf import settings

from shuzheng.core.crypto import DecryptionError, sm3, sm4_gcm_open, sm4_gcm_seal

MAGIC = b"SZK1"
MASTER_BYTES = 16
ENV = "SHUZHENG_MASTER_KEY"

# Files under keys/ whose whole content is one `wrap(…, purpose)` blob: a master rotation re-wraps them.
WRAPPED_FILES = {"audit-sm2.key": "audit-sm2"}  # the audit head's SM2 signing key (audit.signing)
# Database fields holding one such blob (or b"" for none), as (app label, model, field): purpose.
WRAPPED_FIELDS = {("harvest", "HarvestSource", "credential"): "harvest-credential"}  # keys at harvest sources

_lock = threading.Lock()
_masters: dict[tuple[str, str], dict[str, bytes]] = {}  # (home, env value) -> fingerprint -> key


def keys_dir() -> Path:
    path = Path(settings.HOME) / "keys"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def fingerprint(key: bytes) -> str:
    return sm3(b"shuzheng.master:" + key)[:8].hex()


def _read_key_file(path: Path) -> bytes:
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != MASTER_BYTES:
        raise DecryptionError(f"{path} does not hold a {MASTER_BYTES}-byte key")
    return key


def _create_master(path: Path) -> None:
    """Creates the master key file once; O_EXCL makes concurrent first starts agree on one key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(MASTER_BYTES).hex() + "\n")
        f.flush()
        os.fsync(f.fileno())


def _known() -> dict[str, bytes]:
    """Every master key this home can use, current first."""
    folder = keys_dir()
    env = os.environ.get(ENV, "")
    cache_key = (str(folder), env)
    with _lock:
        if cache_key not in _masters:
            if env:
                current = bytes.fromhex(env)
                if len(current) != MASTER_BYTES:
                    raise DecryptionError(f"{ENV} must be {MASTER_BYTES * 2} hex digits")
            else:
                _create_master(folder / "master.key")
                current = _read_key_file(folder / "master.key")
            known = {fingerprint(current): current}
            for old in sorted(folder.glob("master-*.key")):
                key = _read_key_file(old)
                known.setdefault(fingerprint(key), key)
            _masters[cache_key] = known
        return _masters[cache_key]


def forget() -> None:
    """Drops the cached master keys (after a rotation, or when a test switches homes)."""
    with _lock:
        _masters.clear()


def current_fingerprint() -> str:
    return next(iter(_known()))


def wrap(plaintext: bytes, purpose: str) -> bytes:
    """Seals key material under the current master key. `purpose` (say "datakey:42") is bound into the
    blob, so a wrapped key cannot be swapped for another one of a different purpose."""
    fp = current_fingerprint()
    return MAGIC + bytes.fromhex(fp) + sm4_gcm_seal(_known()[fp], plaintext, purpose.encode())


def unwrap(blob: bytes, purpose: str) -> bytes:
    """The key material `wrap` sealed; DecryptionError when the blob was altered, was wrapped for another
    purpose, or its master key is not here."""
    blob = bytes(blob)
    if blob[:4] != MAGIC or len(blob) < 12:
        raise DecryptionError("not a wrapped key")
    fp = blob[4:12].hex()
    master = _known().get(fp)
    if master is None:
        raise DecryptionError(f"the master key {fp} that wrapped this key is not available")
    return sm4_gcm_open(master, blob[12:], purpose.encode())


def wrapped_by(blob: bytes) -> str:
    return bytes(blob)[4:12].hex()
