"""Commercial-cryptography helpers (GB/T 39786): SM3 digests through `cryptography`."""

import hmac as _hmac

from cryptography.hazmat.primitives import hashes


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def sm3_hex(data: bytes) -> str:
    return sm3(data).hex()


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return _hmac.compare_digest(a, b)
