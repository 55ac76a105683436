"""The SM2 key that signs the audit chain's head (GB/T 32918 signatures, GB/T 35276 usage).

Key pair, in SHUZHENG_HOME/keys (folder 0700, files 0600):
- audit-sm2.key: the private key, and nothing else: one `security.keys.wrap(private, "audit-sm2")` blob, so a
  master-key rotation re-wraps it like every other wrapped key file (and, until it does, keeps the old master);
- audit-sm2.pub: the public key as `public_pem` writes it (what `shuzheng audit public-key` exports).
Both are made on first use, under a lock, the public one first; the private one is linked into place with
link(2), which like O_EXCL fails when the name exists, so concurrent first uses agree on one key and no
reader sees half a file. Loading the pair checks that the two belong together (a signature made with one
verifies with the other).

Signed message: b"shuzheng-audit-head|<seq>|<hash hex>|<signed_at>", signed_at in ISO 8601, UTC, microseconds
(as `signed_at_text` writes it), with the default signer id 1234567812345678 (the SM2 Z value is part of
the signature, as GB/T 35276 prescribes). The message, not a bare digest, is signed so that any SM2 tool
(gmssl sm2verify, OpenSSL 3, Bouncy Castle) can check a signature from the exported public key alone.

Fingerprint of a public key: the first 8 bytes (16 hex digits) of SM3(04 || X || Y).

Witness: keys/audit-sm2.last holds the newest signature outside the database, so someone who can write the
database but not the home cannot delete signatures (and rewrite the records they covered) unseen.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import gmssl_pyx

from shuzheng.core.crypto import sm3_hex

KEY_FILE = "audit-sm2.key"
PUBLIC_FILE = "audit-sm2.pub"
LOCK_FILE = "audit-sm2.lock"
PURPOSE = "audit-sm2"
WITNESS_FILE = "audit-sm2.last"
SIGNER_ID = gmssl_pyx.SM2_DEFAULT_SIGNER_ID
MESSAGE_PREFIX = "shuzheng-audit-head"
# SubjectPublicKeyInfo of an SM2 key (RFC 5480 ecPublicKey with the SM2 curve OID 1.2.156.10197.1.301), up to
# the uncompressed point's 0x04: the DER is this prefix followed by X || Y (91 bytes in all).
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")
PEM_BEGIN, PEM_END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"


class SigningKeyError(Exception):
    """The key file or a supplied public key is unusable; the message says why."""


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # 64 bytes, X || Y
    private: bytes  # 32 bytes
    fingerprint: str


def fingerprint(public: bytes) -> str:
    return sm3_hex(b"\x04" + public)[:16]


def key_path() -> Path:
    from shuzheng.security.keys import keys_dir

    return keys_dir() / KEY_FILE


def public_path() -> Path:
    from shuzheng.security.keys import keys_dir

    return keys_dir() / PUBLIC_FILE


def witness_path() -> Path:
    from shuzheng.security.keys import keys_dir

    return keys_dir() / WITNESS_FILE


def _lock():
    from shuzheng.security.keys import keys_dir

    return os.fdopen(os.open(keys_dir() / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600), "w")


def _write_new(path: Path, data: bytes) -> None:
    """Writes `path` unless it exists: a private temporary file (O_EXCL, 0600), then link(2) into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # made by another process meanwhile: theirs is kept
    finally:
        tmp.unlink(missing_ok=True)


def _create() -> None:
    from shuzheng.security.keys import wrap

    with _lock() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if key_path().exists():
            return
        public, private = gmssl_pyx.sm2_key_generate()
        public_path().unlink(missing_ok=True)  # a public key left without its private key (a crash) is useless
        _write_new(public_path(), public_pem(public).encode())
        _write_new(key_path(), wrap(private, PURPOSE))


def home_public_key() -> bytes | None:
    """The home's public key (no master key needed), or None when no key was ever made."""
    if not key_path().exists():
        return None
    try:
        return parse_public_key(public_path().read_text())
    except OSError as exc:
        raise SigningKeyError(f"{public_path()}: {exc.strerror}") from exc


def keypair(create: bool = True) -> KeyPair:
    """The signing key pair, created on first use. Raises SigningKeyError when the files are unusable or do
    not belong together, and shuzheng.core.crypto.DecryptionError when the private key cannot be unwrapped
    (altered, or its master key is not here)."""
    from shuzheng.security.keys import unwrap

    if not key_path().exists():
        if not create:
            raise SigningKeyError(f"{key_path()} does not exist")
        _create()
    private = unwrap(key_path().read_bytes(), PURPOSE)
    public = home_public_key()
    probe = b"shuzheng-audit-key-check"
    if not gmssl_pyx.sm2_verify(public, probe, gmssl_pyx.sm2_sign(private, public, probe, SIGNER_ID), SIGNER_ID):
        raise SigningKeyError(f"{public_path()} is not the public key of {key_path()}")
    return KeyPair(public, private, fingerprint(public))


def signed_at_text(signed_at: dt.datetime) -> str:
    return signed_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def message(seq: int, digest: str, signed_at: dt.datetime) -> bytes:
    return f"{MESSAGE_PREFIX}|{seq}|{digest}|{signed_at_text(signed_at)}".encode()


def sign(key: KeyPair, seq: int, digest: str, signed_at: dt.datetime) -> str:
    """The hex DER signature of (seq, digest, signed_at)."""
    return gmssl_pyx.sm2_sign(key.private, key.public, message(seq, digest, signed_at), SIGNER_ID).hex()


def valid(public: bytes, seq: int, digest: str, signed_at: dt.datetime, signature_hex: str) -> bool:
    try:
        return bool(gmssl_pyx.sm2_verify(public, message(seq, digest, signed_at), bytes.fromhex(signature_hex),
                                         SIGNER_ID))
    except (ValueError, gmssl_pyx.GmsslInnerError):
        return False


# ---- exchanging the public key with an outside auditor ----


def public_pem(public: bytes) -> str:
    """The public key as a standard PEM SubjectPublicKeyInfo (OpenSSL 3 and GmSSL read it), after a few lines
    of explanation (RFC 7468 allows text before the block)."""
    der = SPKI_PREFIX + public
    body = "\n".join(re.findall(".{1,64}", base64.b64encode(der).decode()))
    return (
        "Shuzheng audit-head signing key (SM2, GB/T 32918)\n"
        f"Fingerprint: {fingerprint(public)} (SM3 of 04||X||Y, first 8 bytes)\n"
        f"Public key (X||Y, hex): {public.hex()}\n"
        f"Signer ID: {SIGNER_ID.decode()}\n"
        f"Signed message: {MESSAGE_PREFIX}|<seq>|<chain hash hex>|<signed_at ISO 8601 UTC, microseconds>\n"
        f"{PEM_BEGIN}\n{body}\n{PEM_END}\n"
    )


def parse_public_key(text: str) -> bytes:
    """X || Y from a PEM SubjectPublicKeyInfo (as `public_pem` writes), or from 128 hex digits (130 with the
    leading 04). Raises SigningKeyError naming what is wrong."""
    if PEM_BEGIN in text:
        try:
            inner = text.split(PEM_BEGIN, 1)[1].split(PEM_END, 1)[0]
            der = base64.b64decode("".join(inner.split()), validate=True)
        except (IndexError, ValueError) as exc:
            raise SigningKeyError("the PEM block is damaged") from exc
        if len(der) != len(SPKI_PREFIX) + 64 or not der.startswith(SPKI_PREFIX):
            raise SigningKeyError("the PEM block is not an SM2 public key")
        public = der[len(SPKI_PREFIX):]
    else:
        digits = "".join(text.split()).lower()
        if len(digits) == 130 and digits.startswith("04"):
            digits = digits[2:]
        if not re.fullmatch("[0-9a-f]{128}", digits):
            raise SigningKeyError("expected a PEM public key or 128 hex digits (X||Y)")
        public = bytes.fromhex(digits)
    try:
        return gmssl_pyx.normalize_sm2_public_key(public)
    except gmssl_pyx.GmsslInnerError as exc:
        raise SigningKeyError("not a point on the SM2 curve") from exc


# ---- the witness: the newest signature, kept outside the database ----


def read_witness() -> dict | None:
    path = witness_path()
    try:
        data = json.loads(path.read_text())
        return {"seq": int(data["seq"]), "hash": str(data["hash"]), "signature": str(data["signature"]),
                "signed_at": str(data["signed_at"])}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return {"seq": -1, "hash": "", "signature": "", "signed_at": "", "damaged": True}


def write_witness(seq: int, digest: str, signed_at: dt.datetime, signature: str, *, force: bool = False) -> None:
    """Replaces the witness when `seq` is newer than the one it holds (or always, with `force`: after a
    restore). A lock file serialises concurrent signers; the new file is renamed into place."""
    path = witness_path()
    with _lock() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_witness()
        if not force and current is not None and not current.get("damaged") and current["seq"] >= seq:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"seq": seq, "hash": digest, "signed_at": signed_at_text(signed_at), "signature": signature}, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def remove_witness() -> None:
    witness_path().unlink(missing_ok=True)
