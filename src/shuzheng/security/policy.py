"""The classification policy (S1, S5): the rules that an item's data category (subject), grading level and
sensitive-personal flag drive, kept in a configuration file rather than in code.

The packaged defaults are ``security/data/policy.json``; an operator overrides any top-level key by writing
it to ``SHUZHENG_HOME/security-policy.json`` (a key present there replaces the packaged key whole; keys not
there keep the packaged value). Both files are read once and re-read when their modification time or size
changes, so an operator's edit takes effect without a restart. An invalid file raises ``PolicyError`` naming
the file and the key at fault.

Keys:

``subjects``
    the data categories from the least to the most protected (``other``, ``public_affairs``,
    ``legal_entity``, ``personal``); discovery flags an item whose declared subject ranks below the one its
    data shows.
``default_masks``
    rules ``{"subject"?, "level"?, "sensitive"?, "mask"}``, first match wins (an absent condition matches
    anything); ``mask`` is ``clear``, ``null``, ``hash`` (strings hashed, other types nulled) or
    ``suggested`` (by data element, item name and type: see ``sharing.masks.default_mask``).
``office_approval_levels``
    the resource levels whose sharing applications go on to the platform office after the provider approves.
``encrypt``
    ``{"data_types", "subjects", "levels", "sensitive_personal"}``: an item of one of ``data_types`` is
    encrypted at rest when its subject is in ``subjects`` and its level in ``levels``, or when it is
    sensitive personal information and ``sensitive_personal`` is true.
``discovery``
    ``{"sample_size", "min_share", "min_values", "distinct_share", "distinct_enough", "kinds": {kind:
    {"subject", "level", "sensitive"}}}``: how many non-null values per column a load samples, the share of
    them that must match for the column to be detected as a kind (with at least ``min_values`` matches, of
    which at least ``distinct_share`` or ``distinct_enough`` are different values: one hotline number
    repeated is not personal data), and what each kind implies.
``domestic_destinations``
    the export-control (出境) allow-list: CIDRs (``10.0.0.0/8``), exact host names (``localhost``) and host
    suffixes (``*.gov.cn`` matches ``gov.cn`` and any name under it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

LEVELS = ("general", "important", "core")
LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}
SUBJECTS = ("other", "public_affairs", "legal_entity", "personal")
DATA_TYPES = ("string", "integer", "decimal", "date", "datetime", "boolean")
MASKS = ("clear", "null", "hash", "suggested")
KINDS = ("id_number", "credit_code", "bank_card", "mobile", "email", "plate", "name", "address")
OVERRIDE_NAME = "security-policy.json"

_KEYS = ("subjects", "default_masks", "office_approval_levels", "encrypt", "discovery", "domestic_destinations")


class PolicyError(ImproperlyConfigured):
    """The policy file is not valid; the message names the file and the key."""


def packaged_path() -> Path:
    return Path(str(resources.files("shuzheng.security") / "data" / "policy.json"))


def override_path() -> Path:
    return Path(settings.HOME) / OVERRIDE_NAME


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------

def _fail(source: str, key: str, message: str):
    raise PolicyError(f"{source}: key \"{key}\": {message}")


def _list_of(source, key, value, allowed=None, nonempty=False) -> list:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(source, key, "must be a list of strings")
    if nonempty and not value:
        _fail(source, key, "must not be empty")
    for v in value:
        if allowed is not None and v not in allowed:
            _fail(source, key, f"unknown value \"{v}\" (expected one of {', '.join(allowed)})")
    return value


def _check_keys(source, key, value: dict, required: tuple, optional: tuple = ()):
    if not isinstance(value, dict):
        _fail(source, key, "must be an object")
    for k in value:
        if k not in required and k not in optional:
            _fail(source, f"{key}.{k}" if key else k, "unknown key")
    for k in required:
        if k not in value:
            _fail(source, f"{key}.{k}" if key else k, "missing")


def _bool(source, key, value) -> bool:
    if not isinstance(value, bool):
        _fail(source, key, "must be true or false")
    return value


def _number(source, key, value, low, high, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        _fail(source, key, "must be an integer" if integer else "must be a number")
    if not low <= value <= high:
        _fail(source, key, f"must be between {low} and {high}")
    return value


def parse_destination(entry: str):
    """One allow-list entry: an ip_network, or ("host", name) / ("suffix", name). ValueError when invalid."""
    text = entry.strip().lower().rstrip(".")
    if not text:
        raise ValueError("empty")
    if "/" in text or text.replace(".", "").isdigit() or ":" in text:
        return ipaddress.ip_network(text, strict=False)
    if text.startswith("*."):
        text, kind = text[2:], "suffix"
    else:
        kind = "host"
    labels = text.split(".")
    if not all(label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label) for label in labels):
        raise ValueError(f"not a host name: {entry}")
    return (kind, text)


def validate(data: Any, source: str = "policy") -> dict:
    """The policy checked key by key; PolicyError names the first key at fault."""
    _check_keys(source, "", data, _KEYS)
    _list_of(source, "subjects", data["subjects"], SUBJECTS, nonempty=True)
    if sorted(data["subjects"]) != sorted(SUBJECTS):
        _fail(source, "subjects", f"must list each of {', '.join(SUBJECTS)} once, least protected first")

    rules = data["default_masks"]
    if not isinstance(rules, list) or not rules:
        _fail(source, "default_masks", "must be a non-empty list of rules")
    for i, rule in enumerate(rules):
        key = f"default_masks[{i}]"
        _check_keys(source, key, rule, ("mask",), ("subject", "level", "sensitive"))
        if rule["mask"] not in MASKS:
            _fail(source, f"{key}.mask", f"unknown mask \"{rule['mask']}\" (expected one of {', '.join(MASKS)})")
        if "subject" in rule and rule["subject"] not in SUBJECTS:
            _fail(source, f"{key}.subject", f"unknown subject \"{rule['subject']}\"")
        if "level" in rule and rule["level"] not in LEVELS:
            _fail(source, f"{key}.level", f"unknown level \"{rule['level']}\"")
        if "sensitive" in rule:
            _bool(source, f"{key}.sensitive", rule["sensitive"])
    if not _covers_all(rules):
        _fail(source, "default_masks", "must give a mask for every subject, level and sensitivity "
                                       "(end with a rule without conditions, or cover every level)")

    _list_of(source, "office_approval_levels", data["office_approval_levels"], LEVELS)

    enc = data["encrypt"]
    _check_keys(source, "encrypt", enc, ("data_types", "subjects", "levels", "sensitive_personal"))
    _list_of(source, "encrypt.data_types", enc["data_types"], DATA_TYPES)
    _list_of(source, "encrypt.subjects", enc["subjects"], SUBJECTS)
    _list_of(source, "encrypt.levels", enc["levels"], LEVELS)
    _bool(source, "encrypt.sensitive_personal", enc["sensitive_personal"])

    disc = data["discovery"]
    _check_keys(source, "discovery", disc, ("sample_size", "min_share", "kinds"),
                ("min_values", "distinct_share", "distinct_enough"))
    _number(source, "discovery.sample_size", disc["sample_size"], 10, 10_000_000, integer=True)
    _number(source, "discovery.min_share", disc["min_share"], 0.01, 1.0)
    _number(source, "discovery.min_values", disc.get("min_values", 1), 1, 1_000_000, integer=True)
    _number(source, "discovery.distinct_share", disc.get("distinct_share", 0.0), 0.0, 1.0)
    _number(source, "discovery.distinct_enough", disc.get("distinct_enough", 1), 1, 1_000_000, integer=True)
    kinds = disc["kinds"]
    if not isinstance(kinds, dict):
        _fail(source, "discovery.kinds", "must be an object")
    for kind, implied in kinds.items():
        key = f"discovery.kinds.{kind}"
        if kind not in KINDS:
            _fail(source, key, f"unknown kind (expected one of {', '.join(KINDS)})")
        _check_keys(source, key, implied, ("subject", "level"), ("sensitive",))
        if implied["subject"] not in SUBJECTS:
            _fail(source, f"{key}.subject", f"unknown subject \"{implied['subject']}\"")
        if implied["level"] not in LEVELS:
            _fail(source, f"{key}.level", f"unknown level \"{implied['level']}\"")
        _bool(source, f"{key}.sensitive", implied.get("sensitive", False))

    dests = data["domestic_destinations"]
    _list_of(source, "domestic_destinations", dests)
    for i, entry in enumerate(dests):
        try:
            parse_destination(entry)
        except ValueError as e:
            _fail(source, f"domestic_destinations[{i}]", f"\"{entry}\" is neither a CIDR nor a host name: {e}")
    return data


def _covers_all(rules: list[dict]) -> bool:
    """Whether every (subject, level, sensitive) combination meets some rule."""
    for subject in SUBJECTS:
        for level in LEVELS:
            for sensitive in (False, True):
                if _match(rules, subject, level, sensitive) is None:
                    return False
    return True


def _match(rules, subject, level, sensitive):
    for rule in rules:
        if (rule.get("subject", subject) == subject and rule.get("level", level) == level
                and rule.get("sensitive", sensitive) == sensitive):
            return rule["mask"]
    return None


# ---------------------------------------------------------------------------------------------------------
# Loading, cached per file modification time
# ---------------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_cache: dict = {"stamp": None, "value": None, "destinations": ()}


def _stamp(path: Path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size)


def _read(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise PolicyError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None


def load(packaged: Path | None = None, override: Path | None = None) -> dict:
    """Reads and validates the policy (no cache): the packaged file with the override's top-level keys."""
    packaged = packaged or packaged_path()
    override = override or override_path()
    data = validate(_read(packaged), str(packaged))
    if override.exists():
        extra = _read(override)
        if not isinstance(extra, dict):
            raise PolicyError(f"{override}: must be a JSON object")
        for k in extra:
            if k not in _KEYS:
                _fail(str(override), k, f"unknown key (expected one of {', '.join(_KEYS)})")
        data = validate({**data, **extra}, str(override))
    return data


def policy() -> dict:
    """The parsed policy, re-read when either file changes. Callers must not modify it."""
    packaged, override = packaged_path(), override_path()
    stamp = (_stamp(packaged), _stamp(override))
    cached = _cache
    if cached["stamp"] == stamp and cached["value"] is not None:
        return cached["value"]
    with _lock:
        if _cache["stamp"] != stamp or _cache["value"] is None:
            value = load(packaged, override)
            _cache["destinations"] = tuple(parse_destination(e) for e in value["domestic_destinations"])
            _cache["value"], _cache["stamp"] = value, stamp
        return _cache["value"]


def _destinations():
    policy()
    return _cache["destinations"]


# ---------------------------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------------------------

def _value(v) -> str:
    return getattr(v, "value", v) or ""


def encrypts(item) -> bool:
    """Whether an item is encrypted at rest. `item` has .subject, .level, .sensitive_personal, .data_type."""
    rule = policy()["encrypt"]
    if _value(item.data_type) not in rule["data_types"]:
        return False
    if rule["sensitive_personal"] and bool(getattr(item, "sensitive_personal", False)):
        return True
    return _value(getattr(item, "subject", "other")) in rule["subjects"] and _value(item.level) in rule["levels"]


def needs_office(level: str) -> bool:
    """Whether a sharing application for a resource of `level` goes on to the platform office."""
    return _value(level) in policy()["office_approval_levels"]


def mask_rule(subject: str | None, level: str, sensitive: bool = False) -> str:
    """The default mask rule (clear, null, hash, suggested) for an item."""
    found = _match(policy()["default_masks"], _value(subject) or "other", _value(level), bool(sensitive))
    return found or "suggested"


def subject_rank(subject: str) -> int:
    order = policy()["subjects"]
    s = _value(subject) or "other"
    return order.index(s) if s in order else 0


def level_rank(level: str) -> int:
    return LEVEL_RANK.get(_value(level), 0)


def discovery() -> dict:
    return policy()["discovery"]


def _host_allowed(host: str, entries) -> bool:
    for entry in entries:
        if isinstance(entry, tuple):
            kind, name = entry
            if host == name or (kind == "suffix" and host.endswith("." + name)):
                return True
    return False


def address_allowed(address: str) -> bool:
    """Whether an IP address is inside one of the allow-list's networks."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for entry in _destinations():
        if not isinstance(entry, tuple) and ip.version == entry.version and ip in entry:
            return True
    return False


def destination_check(host: str, resolve=None) -> tuple[bool, str]:
    """(allowed, reason) for sending domestic-only data to `host`. An allow-listed host name or suffix is
    allowed by name; an IP literal is checked against the networks; any other name is resolved (every
    address it resolves to must be in an allowed network)."""
    import socket

    text = (host or "").strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        return False, "no host"
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
        literal = True
    except ValueError:
        literal = False
    if literal:
        if address_allowed(text):
            return True, "address allowed"
        return False, f"address {text} is outside the domestic allow-list"
    if _host_allowed(text, _destinations()):
        return True, "host allowed"
    try:
        infos = (resolve or socket.getaddrinfo)(text, None)
    except (OSError, UnicodeError) as e:
        return False, f"host {text} does not resolve ({e})"
    addresses = sorted({info[4][0] for info in infos})
    if not addresses:
        return False, f"host {text} does not resolve"
    outside = [a for a in addresses if not address_allowed(a)]
    if outside:
        return False, f"host {text} resolves to {', '.join(outside)}, outside the domestic allow-list"
    return True, "all addresses allowed"
