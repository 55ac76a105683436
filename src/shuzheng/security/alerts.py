"""Anomaly detection over the audit trail (S4 situational awareness).

Every sign-in, failed sign-in, bad API key and data-gateway call (refusals included) is an audit record; the
gateway's reach it within a fraction of a second through sharing.recorder's journal. `scan()` takes in the
records after a stored cursor, in seq order, and

  1. adds each to small per-bucket counts (`Tally`: per system and minute/hour, per username or address and
     minute, per system and off-hours period; running totals for /metrics and the dashboard);
  2. evaluates the rules for every subject the new records touched, over those counts (a sliding window is a
     sum over a few minute buckets; a baseline is the median over a week of hour buckets), so the cost of a
     scan follows the new records, never the size of the trail;
  3. opens an alert for a rule and subject that has none open, or adds to the open one (count, last_seen):
     one unclosed alert per (rule, subject), enforced by the database;
  4. moves the cursor — all of it in ONE transaction, so each record is counted exactly once even when two
     scans race (the cursor row is locked and re-checked) or a scan dies half-way.

The rules and their thresholds come from data/alert_rules.json, overridden key by key by
SHUZHENG_HOME/alert-rules.json (settings.SECURITY_ALERT_RULES may name another file):

  bulk_pull       a system's rows in the last `window_minutes` above max(floor_rows, factor × the median rows
                  of its active hours over the previous `baseline_days`); the same per day (day_floor_rows,
                  day_factor × the median of its active days). Without enough history only the floor applies.
  off_hours       more than `threshold_calls` gateway calls of one system in one off-hours period (outside
                  work_start–work_end on workdays, in `timezone`; holidays and extra_workdays for 调休)
  enumeration     at least `threshold_lookups` identity lookups by one system within `window_minutes`.
                  The audit record of a verification names the items checked, never their values, so a lookup
                  is a verification call, or an ID-number value used as an eq/in filter of a records call;
                  values are counted, never copied into an alert.
  failed_logins   at least per_user failed sign-ins for one username, or per_address from one address,
                  within window_minutes
  bad_api_keys    at least per_address calls with an invalid, revoked or expired API key from one address
  new_address     a system calling from an address not seen for it in `history_days` (a system's very first
                  address is learnt, not flagged). The gateway's records name the system, not which of its
                  keys, so the subject is the system.
  export_refused  any record whose action is in `actions` (export_control.refused): an alert at once
  integrity_failure  a gateway call refused with 503 because stored data failed its integrity check (a sealed
                  value that does not open: tampering or a wrong key): an alert at once, per resource
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import re
import statistics
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from shuzheng.audit import services as audit
from shuzheng.audit.models import AuditRecord
from shuzheng.security.models import (SEVERITY_LEVEL, Alert, AlertEvent, AlertState, KnownAddress, ScanCursor,
                                      Severity, SubjectKind, Tally)

log = logging.getLogger(__name__)

BATCH = 20_000  # audit records per transaction: keeps the write lock short while catching up
PACKAGED = Path(__file__).resolve().parent / "data" / "alert_rules.json"
RULES = ("bulk_pull", "off_hours", "enumeration", "failed_logins", "bad_api_keys", "new_address", "export_refused",
         "integrity_failure")
LOGIN_FAILED = "auth.login_failed"
APIKEY_FAILED = "auth.apikey_failed"

# Tally kinds
PULL_M, PULL_H = "pull.m", "pull.h"  # per system: calls (n) and rows, per minute and per hour
OFF_P = "offhours.p"  # per system: calls in one off-hours period (start = when the period began)
LOOKUP_M = "lookup.m"  # per system: identity lookups per minute
LOGIN_USER_M, LOGIN_IP_M = "login.user.m", "login.ip.m"  # failed sign-ins per username / address per minute
BADKEY_M = "badkey.ip.m"  # bad API keys per address per minute
TOTAL, TOTAL_H = "total", "total.h"  # running totals (start 0) and per hour, subjects below
TOTALS = ("gateway.ok", "gateway.refused", "login.failed", "apikey.failed")
MINUTE_KINDS = (PULL_M, LOOKUP_M, LOGIN_USER_M, LOGIN_IP_M, BADKEY_M)

ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")

# What an alert says, in the source language; rendered in the reader's language (summary_text) and stored in
# the platform's (Alert.summary).
TEXTS = {
    "bulk_pull": gettext_noop("System %(subject)s pulled %(rows)s rows in %(window)s, above %(threshold)s "
                              "(%(factor)s× its usual %(baseline)s)."),
    "bulk_pull_new": gettext_noop("System %(subject)s pulled %(rows)s rows in %(window)s, above the floor of "
                                  "%(threshold)s for a system without enough history."),
    "off_hours": gettext_noop("System %(subject)s made %(calls)s gateway calls outside working hours since "
                              "%(since)s."),
    "enumeration": gettext_noop("System %(subject)s made %(lookups)s identity lookups in %(minutes)s minutes "
                                "(threshold %(threshold)s)."),
    "failed_logins_user": gettext_noop("%(n)s failed sign-ins for username %(subject)s in %(minutes)s minutes."),
    "failed_logins_address": gettext_noop("%(n)s failed sign-ins from %(subject)s in %(minutes)s minutes."),
    "bad_api_keys": gettext_noop("%(n)s calls with a bad API key from %(subject)s in %(minutes)s minutes."),
    "new_address": gettext_noop("System %(subject)s called from %(ip)s, an address not seen for it in %(days)s "
                                "days."),
    "export_refused": gettext_noop("Export control refused %(what)s by %(subject)s."),
    "integrity_failure": gettext_noop("Stored data of %(subject)s failed its integrity check when %(caller)s "
                                      "called the gateway."),
}
WINDOW_TEXT = {"hour": gettext_noop("the last %(n)s minutes"), "day": gettext_noop("the last 24 hours")}

RULE_NAMES = {
    "bulk_pull": gettext_noop("Bulk pull"),
    "off_hours": gettext_noop("Off-hours access"),
    "enumeration": gettext_noop("Enumeration"),
    "failed_logins": gettext_noop("Failed sign-ins"),
    "bad_api_keys": gettext_noop("Bad API keys"),
    "new_address": gettext_noop("New source address"),
    "export_refused": gettext_noop("Export-control refusal"),
    "integrity_failure": gettext_noop("Integrity failure"),
}


def rule_name(rule: str) -> str:
    return _(RULE_NAMES[rule]) if rule in RULE_NAMES else rule


def summary_text(alert: Alert) -> str:
    """The alert's summary in the active language (the stored one is in the platform's)."""
    return _render(alert.details) or alert.summary


def _render(details: dict) -> str:
    text, args = details.get("text"), details.get("args")
    if text not in TEXTS or not isinstance(args, dict):
        return ""
    args = dict(args)
    if "window" in args and isinstance(args["window"], dict):
        args["window"] = _(WINDOW_TEXT[args["window"]["kind"]]) % args["window"]
    try:
        return _(TEXTS[text]) % args
    except (KeyError, TypeError, ValueError):
        return ""


def scrub(value, depth: int = 0):
    """A value safe to copy into an alert: ID numbers masked, strings and lists bounded."""
    if depth > 3:
        return None
    if isinstance(value, str):
        return ID_NUMBER.sub(lambda m: m.group(0)[:4] + "*" * (len(m.group(0)) - 4), value[:200])
    if isinstance(value, dict):
        return {str(k)[:40]: scrub(v, depth + 1) for k, v in list(value.items())[:20]}
    if isinstance(value, (list, tuple)):
        return [scrub(v, depth + 1) for v in list(value)[:20]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(str(value), depth)


# --------------------------------------------------------------------------------------------------
# The rules file
# --------------------------------------------------------------------------------------------------


class RulesError(ValueError):
    pass


def override_path() -> Path:
    return Path(getattr(settings, "SECURITY_ALERT_RULES", None) or Path(settings.HOME) / "alert-rules.json")


def merge(base: dict, override: dict) -> dict:
    """`override` laid over `base`, key by key (nested objects merged, anything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _hhmm(text, where: str) -> dt.time:
    try:
        return dt.time.fromisoformat(str(text))
    except ValueError:
        raise RulesError(f"{where}: a time HH:MM, not {text!r}") from None


def _dates(values, where: str) -> frozenset:
    try:
        return frozenset(dt.date.fromisoformat(str(v)) for v in values)
    except (TypeError, ValueError):
        raise RulesError(f"{where}: a list of dates YYYY-MM-DD") from None


INT_KEYS = {"window_minutes", "baseline_days", "min_active_hours", "min_active_days", "factor", "floor_rows",
            "day_factor", "day_floor_rows", "threshold_calls", "threshold_lookups", "per_user", "per_address",
            "history_days"}


class Calendar:
    """Working hours: which moments are off-hours, and when the off-hours period holding a moment began."""

    def __init__(self, cfg: dict, tz: dt.tzinfo):
        self.tz = tz
        self.start = _hhmm(cfg["work_start"], "off_hours.work_start")
        self.end = _hhmm(cfg["work_end"], "off_hours.work_end")
        if self.start >= self.end:
            raise RulesError("off_hours: work_start must be before work_end")
        workdays = cfg.get("workdays", [])
        if not isinstance(workdays, list) or not all(isinstance(d, int) and 1 <= d <= 7 for d in workdays):
            raise RulesError("off_hours.workdays: ISO weekday numbers, 1 (Monday) to 7 (Sunday)")
        self.workdays = frozenset(workdays)
        self.holidays = _dates(cfg.get("holidays", []), "off_hours.holidays")
        self.extra = _dates(cfg.get("extra_workdays", []), "off_hours.extra_workdays")
        self._cache: dict[int, tuple[bool, int]] = {}

    def working_day(self, day: dt.date) -> bool:
        return day in self.extra or (day.isoweekday() in self.workdays and day not in self.holidays)

    def off_hours(self, local: dt.datetime) -> bool:
        return not (self.working_day(local.date()) and self.start <= local.time() < self.end)

    def period_start(self, local: dt.datetime) -> int:
        """Seconds since the epoch when the off-hours period holding `local` began: the end of the last working
        span before it (at most 31 days back)."""
        for back in range(32):
            day = local.date() - dt.timedelta(days=back)
            if self.working_day(day):
                end = dt.datetime.combine(day, self.end, tzinfo=self.tz)
                if end <= local:
                    return int(end.timestamp())
        return int(dt.datetime.combine(local.date() - dt.timedelta(days=31), dt.time(0), tzinfo=self.tz).timestamp())

    def at(self, ts_s: int) -> tuple[bool, int]:
        """(off-hours?, period start) of a moment; the same for a whole minute, so cached per minute."""
        minute = ts_s - ts_s % 60
        hit = self._cache.get(minute)
        if hit is None:
            local = dt.datetime.fromtimestamp(minute, self.tz)
            off = self.off_hours(local)
            hit = (off, self.period_start(local) if off else 0)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[minute] = hit
        return hit


class Rules:
    """The rules file, checked: every threshold a positive integer, every severity known."""

    def __init__(self, data: dict):
        self.data = data
        try:
            self.tz = zoneinfo.ZoneInfo(str(data.get("timezone", "Asia/Shanghai")))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise RulesError(f"timezone: unknown time zone {data.get('timezone')!r}") from None
        self.lookback_hours = data.get("initial_lookback_hours", 24)
        if not isinstance(self.lookback_hours, int) or self.lookback_hours < 0:
            raise RulesError("initial_lookback_hours: a whole number of hours, 0 or more")
        rules = data.get("rules")
        if not isinstance(rules, dict):
            raise RulesError("rules: an object of rule name -> settings")
        unknown = set(rules) - set(RULES)
        if unknown:
            raise RulesError(f"rules: unknown rule(s) {', '.join(sorted(unknown))}; known: {', '.join(RULES)}")
        for name in RULES:
            cfg = rules.get(name)
            if not isinstance(cfg, dict):
                raise RulesError(f"rules.{name}: missing")
            if cfg.get("severity") not in Severity.values:
                raise RulesError(f"rules.{name}.severity: one of {', '.join(Severity.values)}")
            for key, value in cfg.items():
                if key in INT_KEYS and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                    raise RulesError(f"rules.{name}.{key}: a whole number, 1 or more")
        if not all(isinstance(a, str) for a in rules["export_refused"].get("actions", [])):
            raise RulesError("rules.export_refused.actions: a list of audit actions")
        if not all(isinstance(s, str) for s in rules["enumeration"].get("exempt_systems", [])):
            raise RulesError("rules.enumeration.exempt_systems: a list of system codes")
        self.calendar = Calendar(rules["off_hours"], self.tz)

    def __getitem__(self, name: str) -> dict:
        return self.data["rules"][name]

    def on(self, name: str) -> bool:
        return bool(self.data["rules"][name].get("enabled", True))


_loaded: dict = {}


def load_rules(override: dict | None = None) -> Rules:
    """The packaged rules with the deployment's file laid over them (re-read when the file changes), and
    `override` (tests, one-off scans) over both."""
    path = override_path()
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        stamp = None
    key = (str(path), stamp)
    if override is None and _loaded.get("key") == key:
        return _loaded["rules"]
    data = json.loads(PACKAGED.read_text(encoding="utf-8"))
    if stamp is not None:
        try:
            data = merge(data, json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, AttributeError) as exc:
            raise RulesError(f"{path}: not a JSON object ({exc})") from None
    if override:
        data = merge(data, override)
    rules = Rules(data)
    if override is None:
        _loaded.update(key=key, rules=rules)
    return rules


# --------------------------------------------------------------------------------------------------
# Reading a batch of audit records
# --------------------------------------------------------------------------------------------------


@dataclass
class Evidence:
    """What a batch holds for one rule and subject: how many events, when, and which records."""

    first_ts: int
    last_ts: int
    first_seq: int
    last_seq: int
    events: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, ts: int, seq: int, n: int = 1) -> None:
        self.first_ts = min(self.first_ts, ts)
        self.last_ts = max(self.last_ts, ts)
        self.first_seq = min(self.first_seq, seq)
        self.last_seq = max(self.last_seq, seq)
        self.events += n


@dataclass
class Hit:
    rule: str
    kind: str
    subject: str
    severity: str
    text: str
    args: dict
    details: dict
    evidence: Evidence
    opening_count: int  # the count a new alert starts with (the window's events); an open one adds the batch's


class Batch:
    def __init__(self, rules: Rules):
        self.rules = rules
        self.tallies: dict[tuple[str, str, int], list[int]] = {}
        self.evidence: dict[tuple[str, str, str], Evidence] = {}
        self.addresses: list[tuple[str, str, int, int]] = []
        self.immediate: list[Hit] = []
        self.export_actions = frozenset(rules["export_refused"].get("actions", []))
        self.exempt = frozenset(rules["enumeration"].get("exempt_systems", []))

    def count(self, kind: str, subject: str, start: int, n: int = 1, rows: int = 0) -> None:
        cell = self.tallies.get((kind, subject, start))
        if cell is None:
            self.tallies[(kind, subject, start)] = [n, rows]
        else:
            cell[0] += n
            cell[1] += rows

    def saw(self, rule: str, kind: str, subject: str, ts: int, seq: int, n: int = 1) -> Evidence:
        ev = self.evidence.get((rule, kind, subject))
        if ev is None:
            ev = self.evidence[(rule, kind, subject)] = Evidence(ts, ts, seq, seq)
        ev.add(ts, seq, n)
        return ev

    def total(self, name: str, hour: int) -> None:
        self.count(TOTAL, name, 0)
        self.count(TOTAL_H, name, hour)

    def take(self, seq: int, ts: int, actor: str, ip: str, action: str, object_type: str, object_id: str,
             summary: str) -> None:
        ts_s = ts // 1_000_000
        minute, hour = ts_s - ts_s % 60, ts_s - ts_s % 3600
        on = self.rules.on
        if action.startswith("share."):
            s = _loads(summary)
            refused = action == "share.refused"
            self.total("gateway.refused" if refused else "gateway.ok", hour)
            if refused and s.get("status") == 401:
                self.count(BADKEY_M, ip or "?", minute)
                if on("bad_api_keys"):
                    self.saw("bad_api_keys", SubjectKind.ADDRESS, ip or "?", ts, seq)
            if refused and s.get("status") == 503 and on("integrity_failure"):
                resource = str(s.get("resource") or "?")[:40]
                self.immediate.append(Hit("integrity_failure", SubjectKind.RESOURCE, resource,
                                          self.rules["integrity_failure"]["severity"], "integrity_failure",
                                          {"subject": resource, "caller": actor or "?"},
                                          {"call": s.get("call"), "caller": actor, "ip": ip,
                                           "reason": scrub(s.get("reason"))}, Evidence(ts, ts, seq, seq, 1), 1))
            system = actor[7:] if actor.startswith("system:") else ""
            if not system:
                return
            rows = 0 if refused else _int(s.get("rows"))
            self.count(PULL_M, system, minute, 1, rows)
            self.count(PULL_H, system, hour, 1, rows)
            if on("bulk_pull"):
                self.saw("bulk_pull", SubjectKind.SYSTEM, system, ts, seq)
            off, period = self.rules.calendar.at(ts_s)
            if off:
                self.count(OFF_P, system, period)
                if on("off_hours"):
                    self.saw("off_hours", SubjectKind.SYSTEM, system, ts, seq).extra["period"] = period
            if not refused:
                lookups = _lookups(action, s)
                if lookups:
                    self.count(LOOKUP_M, system, minute, lookups)
                    if on("enumeration") and system not in self.exempt:
                        self.saw("enumeration", SubjectKind.SYSTEM, system, ts, seq, lookups)
            if ip:
                self.addresses.append((system, ip, ts, seq))
        elif action == LOGIN_FAILED:
            s = _loads(summary)
            self.total("login.failed", hour)
            username = str(s.get("username") or "")[:150]
            if username:
                self.count(LOGIN_USER_M, username, minute)
                if on("failed_logins"):
                    self.saw("failed_logins", SubjectKind.USER, username, ts, seq)
            if ip:
                self.count(LOGIN_IP_M, ip, minute)
                if on("failed_logins"):
                    self.saw("failed_logins", SubjectKind.ADDRESS, ip, ts, seq)
        elif action == APIKEY_FAILED:
            self.total("apikey.failed", hour)
            self.count(BADKEY_M, ip or "?", minute)
            if on("bad_api_keys"):
                self.saw("bad_api_keys", SubjectKind.ADDRESS, ip or "?", ts, seq)
        if action in self.export_actions and on("export_refused"):
            self.immediate.append(_export_hit(self.rules, seq, ts, actor, ip, action, object_type, object_id,
                                              _loads(summary)))


def _loads(text: str) -> dict:
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _int(value) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


BLIND_TAG = re.compile(r"bi:[0-9a-f]{12}")


def _lookups(action: str, s: dict) -> int:
    """Identity lookups in one successful gateway call: a verification is one; a records call counts the
    distinct ID-number values of its eq/in filters (the values themselves go no further than this function)."""
    if action == "share.verify":
        return 1
    if action != "share.records":
        return 0
    filters = s.get("filters")
    if not isinstance(filters, dict):
        return 0
    values = set()
    for name, value in filters.items():
        op = str(name).partition(".")[0]
        if op in ("eq", "in") and isinstance(value, str):
            values.update(m.group(0).upper() for m in ID_NUMBER.finditer(value))
            values.update(BLIND_TAG.findall(value))  # sealed ID numbers are audited as their blind-index tags
    return len(values)


def _subject_of(actor: str, ip: str) -> tuple[str, str]:
    if actor.startswith("system:"):
        return SubjectKind.SYSTEM, actor[7:]
    if actor and actor != "anonymous" and not actor.startswith(("cli:", "worker")):
        return SubjectKind.USER, actor
    return SubjectKind.ADDRESS, ip or "?"


def _export_hit(rules: Rules, seq, ts, actor, ip, action, object_type, object_id, s: dict) -> Hit:
    kind, subject = _subject_of(actor, ip)
    # export_control.refused names the resource, the channel and the destination (sharing.services._refused).
    parts = [str(s[k])[:60] for k in ("channel", "resource") if s.get(k)]
    if s.get("destination"):
        parts.append("→ " + str(s["destination"])[:100])
    what = scrub(" ".join(parts)) or " ".join(p for p in (object_type, object_id[:12]) if p) or action
    details = {"action": action, "ip": ip, "object_type": object_type, "object_id": object_id,
               "record": scrub(s)}
    return Hit("export_refused", kind, subject, rules["export_refused"]["severity"], "export_refused",
               {"subject": subject, "what": what}, details, Evidence(ts, ts, seq, seq, 1), 1)


# --------------------------------------------------------------------------------------------------
# Evaluating the rules over the tallies
# --------------------------------------------------------------------------------------------------


def _chunks(items: list, n: int = 500):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _buckets(kind: str, subjects: list[str], since: int) -> dict[str, list[tuple[int, int, int]]]:
    """subject -> [(start, n, rows)] of one kind's buckets starting at or after `since`."""
    out: dict[str, list] = {s: [] for s in subjects}
    for chunk in _chunks(subjects):
        for subject, start, n, rows in Tally.objects.filter(kind=kind, subject__in=chunk, start__gte=since) \
                .values_list("subject", "start", "n", "rows"):
            out[subject].append((start, n, rows))
    return out


def _window(buckets: list, last_minute: int, minutes: int) -> tuple[int, int]:
    """(n, rows) summed over the `minutes` minute buckets ending with the one starting at `last_minute`."""
    lo = last_minute - (minutes - 1) * 60
    n = rows = 0
    for start, bn, brows in buckets:
        if lo <= start <= last_minute:
            n += bn
            rows += brows
    return n, rows


def _minute(ts_us: int) -> int:
    s = ts_us // 1_000_000
    return s - s % 60


def _evaluate(batch: Batch) -> list[Hit]:
    rules = batch.rules
    hits: list[Hit] = list(batch.immediate)
    by_rule: dict[str, dict[tuple[str, str], Evidence]] = {}
    for (rule, kind, subject), ev in batch.evidence.items():
        by_rule.setdefault(rule, {})[(kind, subject)] = ev

    def windowed(rule: str, tally: str, kind: str, threshold: int, text: str, minutes: int, arg: str = "n"):
        found = {s: ev for (k, s), ev in by_rule.get(rule, {}).items() if k == kind}
        if not found:
            return
        since = min(_minute(ev.last_ts) for ev in found.values()) - (minutes - 1) * 60
        buckets = _buckets(tally, list(found), since)
        for subject, ev in found.items():
            n, _rows = _window(buckets[subject], _minute(ev.last_ts), minutes)
            if n >= threshold:
                hits.append(Hit(rule, kind, subject, rules[rule]["severity"], text,
                                {"subject": subject, arg: n, "minutes": minutes, "threshold": threshold},
                                {"window_minutes": minutes, "threshold": threshold, "in_window": n}, ev, n))

    if rules.on("failed_logins"):
        cfg = rules["failed_logins"]
        windowed("failed_logins", LOGIN_USER_M, SubjectKind.USER, cfg["per_user"], "failed_logins_user",
                 cfg["window_minutes"])
        windowed("failed_logins", LOGIN_IP_M, SubjectKind.ADDRESS, cfg["per_address"], "failed_logins_address",
                 cfg["window_minutes"])
    if rules.on("bad_api_keys"):
        cfg = rules["bad_api_keys"]
        windowed("bad_api_keys", BADKEY_M, SubjectKind.ADDRESS, cfg["per_address"], "bad_api_keys",
                 cfg["window_minutes"])
    if rules.on("enumeration"):
        cfg = rules["enumeration"]
        windowed("enumeration", LOOKUP_M, SubjectKind.SYSTEM, cfg["threshold_lookups"], "enumeration",
                 cfg["window_minutes"], arg="lookups")
    if rules.on("off_hours"):
        hits.extend(_off_hours(rules, by_rule.get("off_hours", {})))
    if rules.on("bulk_pull"):
        hits.extend(_bulk_pull(rules, by_rule.get("bulk_pull", {})))
    return hits


def _off_hours(rules: Rules, found: dict) -> list[Hit]:
    cfg = rules["off_hours"]
    hits = []
    for (kind, system), ev in found.items():
        period = ev.extra["period"]
        n = Tally.objects.filter(kind=OFF_P, subject=system, start=period).values_list("n", flat=True).first() or 0
        if n > cfg["threshold_calls"]:
            since = dt.datetime.fromtimestamp(period, rules.tz).strftime("%Y-%m-%d %H:%M")
            hits.append(Hit("off_hours", kind, system, cfg["severity"], "off_hours",
                            {"subject": system, "calls": n, "since": since},
                            {"period_start": since, "calls_in_period": n, "threshold": cfg["threshold_calls"],
                             "working_hours": f"{cfg['work_start']}-{cfg['work_end']}"}, ev, n))
    return hits


def _median(values: list[int], at_least: int) -> float | None:
    active = [v for v in values if v > 0]
    return statistics.median(active) if len(active) >= at_least else None


def _bulk_pull(rules: Rules, found: dict) -> list[Hit]:
    cfg = rules["bulk_pull"]
    minutes, days = cfg["window_minutes"], cfg["baseline_days"]
    hits = []
    if not found:
        return hits
    systems = [s for (_k, s) in found]
    last = {s: _minute(ev.last_ts) for (_k, s), ev in found.items()}
    minute_buckets = _buckets(PULL_M, systems, min(last.values()) - (minutes - 1) * 60)
    hour_since = min(last.values()) - min(last.values()) % 3600 - (days + 1) * 86400
    hour_buckets = _buckets(PULL_H, systems, hour_since)
    for (kind, system), ev in found.items():
        t = last[system]
        hour = t - t % 3600
        _n, rows = _window(minute_buckets[system], t, minutes)
        hourly = {start: brows for start, _bn, brows in hour_buckets[system]}
        window_start_hour = (t - (minutes - 1) * 60) - (t - (minutes - 1) * 60) % 3600
        baseline_hours = [hourly.get(h, 0) for h in range(window_start_hour - days * 86400, window_start_hour, 3600)]
        median = _median(baseline_hours, cfg["min_active_hours"])
        threshold = max(cfg["floor_rows"], int(cfg["factor"] * median) if median else 0)
        window = {"kind": "hour", "n": minutes}
        factor = cfg["factor"]
        if rows <= threshold:
            # The day: the last 24 hour buckets against the median of the previous days' totals.
            rows = sum(hourly.get(h, 0) for h in range(hour - 23 * 3600, hour + 1, 3600))
            daily = [sum(hourly.get(h, 0) for h in range(hour - d * 86400 - 23 * 3600, hour - d * 86400 + 1, 3600))
                     for d in range(1, days + 1)]
            median = _median(daily, cfg["min_active_days"])
            threshold = max(cfg["day_floor_rows"], int(cfg["day_factor"] * median) if median else 0)
            window, factor = {"kind": "day", "n": 24}, cfg["day_factor"]
            if rows <= threshold:
                continue
        text = "bulk_pull" if median else "bulk_pull_new"
        hits.append(Hit("bulk_pull", kind, system, cfg["severity"], text,
                        {"subject": system, "rows": rows, "window": window, "threshold": threshold,
                         "factor": factor, "baseline": round(median) if median else 0},
                        {"window": window["kind"], "rows_in_window": rows, "threshold": threshold,
                         "baseline_median": median, "factor": factor}, ev, ev.events))
    return hits


def _new_addresses(batch: Batch) -> list[Hit]:
    """Learns the addresses systems call from; a system with history seen from an address it has not used for
    history_days is a hit. Within a batch, in seq order."""
    if not batch.addresses:
        return []
    rules = batch.rules
    days = rules["new_address"]["history_days"]
    systems = sorted({a[0] for a in batch.addresses})
    known: dict[str, dict[str, list[int]]] = {s: {} for s in systems}
    for chunk in _chunks(systems):
        for system, ip, first, last in KnownAddress.objects.filter(system__in=chunk) \
                .values_list("system", "ip", "first_seen", "last_seen"):
            known[system][ip] = [first, last, 0]  # 0: unchanged
    hits: dict[tuple[str, str], Hit] = {}
    for system, ip, ts, seq in batch.addresses:
        seen = known[system]
        row = seen.get(ip)
        hit = hits.get((system, ip))
        if hit is not None:  # more calls from an address this batch found new
            hit.evidence.add(ts, seq)
            hit.opening_count += 1
        elif rules.on("new_address") and seen and (row is None or row[1] < ts - days * 86_400_000_000):
            others = sorted((i for i in seen if i != ip), key=lambda i: -seen[i][1])[:10]
            hits[(system, ip)] = Hit("new_address", SubjectKind.SYSTEM, system, rules["new_address"]["severity"],
                                     "new_address", {"subject": system, "ip": ip, "days": days},
                                     {"addresses": [ip], "known": others, "history_days": days},
                                     Evidence(ts, ts, seq, seq, 1), 1)
        if row is None:
            seen[ip] = [ts, ts, 1]
        elif ts > row[1]:
            row[1], row[2] = ts, 1
    KnownAddress.objects.bulk_create(
        [KnownAddress(system=s, ip=ip, first_seen=row[0], last_seen=row[1])
         for s, ips in known.items() for ip, row in ips.items() if row[2]],
        update_conflicts=True, unique_fields=["system", "ip"], update_fields=["last_seen"])
    return list(hits.values())


# --------------------------------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------------------------------

TALLY_UPSERT = """
INSERT INTO security_tally (kind, subject, start, n, rows) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (kind, subject, start) DO UPDATE SET n = security_tally.n + excluded.n,
    rows = security_tally.rows + excluded.rows
"""


@dataclass
class ScanResult:
    records: int = 0
    opened: int = 0
    updated: int = 0
    cursor: int = 0

    def as_dict(self) -> dict:
        return {"records": self.records, "opened": self.opened, "updated": self.updated, "cursor": self.cursor}


def _worker():
    from shuzheng.org.services import Actor

    return Actor(label="security-scan", ip="127.0.0.1", operator=True)


def _relevant(export_actions) -> Q:
    return Q(action__startswith="share.") | Q(action__in=[LOGIN_FAILED, APIKEY_FAILED, *export_actions])


def _cursor(now: dt.datetime, rules: Rules) -> ScanCursor:
    cursor = ScanCursor.objects.filter(pk=1).first()
    if cursor is not None:
        return cursor
    # A new installation watches from `initial_lookback_hours` ago, not from the trail's first record.
    cut = int((now - dt.timedelta(hours=rules.lookback_hours)).timestamp() * 1_000_000)
    cursor, _created = ScanCursor.objects.get_or_create(pk=1, defaults={"seq": _last_before(cut)})
    return cursor


def _last_before(cut_us: int) -> int:
    """The seq just before the first record at or after `cut_us`: a binary search over seq (records are
    appended in time order, give or take the journal's fraction of a second), a few dozen key lookups
    whatever the trail's size."""
    lo = 0
    hi = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    while lo < hi:  # invariant: records <= lo are before the cut; the answer is in [lo, hi]
        mid = (lo + hi + 1) // 2
        ts = AuditRecord.objects.filter(seq__gte=mid).order_by("seq").values_list("ts", flat=True).first()
        if ts is not None and ts < cut_us:
            lo = mid
        else:
            hi = mid - 1
    return lo


def scan(now: dt.datetime | None = None, rules: Rules | dict | None = None, max_batches: int | None = None) -> ScanResult:
    """Takes in every audit record after the cursor (in batches of BATCH), raising or adding to alerts; returns
    what it did. `now` (default: the clock) places a new cursor and decides which buckets are old enough to
    drop; `rules` overrides the rules file (a dict is laid over it)."""
    now = now or timezone.now()
    if not isinstance(rules, Rules):
        rules = load_rules(rules)
    result = ScanResult()
    batches = 0
    latest_ts = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        cursor = _cursor(now, rules)
        head = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        hi = min(head, cursor.seq + BATCH)
        result.cursor = cursor.seq
        if hi <= cursor.seq:
            break
        batch = Batch(rules)
        rows = (AuditRecord.objects.filter(seq__gt=cursor.seq, seq__lte=hi)
                .filter(_relevant(batch.export_actions)).order_by("seq")
                .values_list("seq", "ts", "actor", "ip", "action", "object_type", "object_id", "summary"))
        for row in rows.iterator(chunk_size=2000):
            batch.take(*row)
            latest_ts = max(latest_ts, row[1])
        opened, updated = _commit(batch, cursor.seq, hi, now)
        if opened is None:  # another scan took these records first: start again from where it left off
            continue
        result.records += hi - cursor.seq
        result.opened += opened
        result.updated += updated
        result.cursor = hi
        if hi == head:
            break
    if latest_ts:
        _prune(rules, min(now, dt.datetime.fromtimestamp(latest_ts / 1_000_000, dt.timezone.utc)))
    return result


def _commit(batch: Batch, lo: int, hi: int, now: dt.datetime) -> tuple[int | None, int]:
    """Stores a batch's counts and alerts and moves the cursor from lo to hi, in one transaction; (None, 0)
    if the cursor is no longer at lo."""
    with transaction.atomic():
        cursor = ScanCursor.objects.select_for_update().get(pk=1)
        if cursor.seq != lo:
            return None, 0
        if batch.tallies:
            with connection.cursor() as cur:
                cur.executemany(TALLY_UPSERT, [(k, s, start, n, rows)
                                               for (k, s, start), (n, rows) in batch.tallies.items()])
        hits = _new_addresses(batch) + _evaluate(batch)
        opened, updated, entries = _store(hits, now)
        cursor.seq = hi
        cursor.records += hi - lo
        cursor.scanned_at = now
        cursor.save(update_fields=["seq", "records", "scanned_at"])
        if entries:  # last: the audit head's lock is taken after the alerts' rows (services lock in that order)
            audit.record_many(entries)
    return opened, updated


def _when(ts_us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_us / 1_000_000, dt.timezone.utc)


def _merge_details(old: dict, new: dict) -> dict:
    out = {**old, **new}
    for key, value in new.items():  # lists (new addresses) accumulate
        if isinstance(value, list) and isinstance(old.get(key), list):
            out[key] = list(dict.fromkeys(old[key] + value))[:20]
    return out


def _store(hits: list[Hit], now: dt.datetime) -> tuple[int, int, list]:
    opened = updated = 0
    entries = []
    worker = _worker()
    with translation.override(settings.LANGUAGE_CODE):
        for hit in hits:
            ev = hit.evidence
            details = {**hit.details, "text": hit.text, "args": hit.args}
            summary = _render(details)[:300]
            alert = (Alert.objects.select_for_update()
                     .filter(rule=hit.rule, subject_kind=hit.kind, subject=hit.subject)
                     .exclude(state=AlertState.CLOSED).first())
            if alert is not None:
                alert.count += ev.events
                alert.last_seen = max(alert.last_seen, _when(ev.last_ts))
                alert.last_seq = max(alert.last_seq, ev.last_seq)
                alert.details = _merge_details(alert.details, details)
                alert.summary = _render(alert.details)[:300] or summary
                if SEVERITY_LEVEL[hit.severity] > alert.level:
                    alert.severity, alert.level = hit.severity, SEVERITY_LEVEL[hit.severity]
                alert.save(update_fields=["count", "last_seen", "last_seq", "details", "summary", "severity",
                                          "level"])
                updated += 1
                continue
            alert = Alert.objects.create(
                rule=hit.rule, severity=hit.severity, level=SEVERITY_LEVEL[hit.severity], subject_kind=hit.kind,
                subject=hit.subject, summary=summary, details=details, first_seen=_when(ev.first_ts),
                last_seen=_when(ev.last_ts), count=max(1, hit.opening_count), first_seq=ev.first_seq,
                last_seq=ev.last_seq)
            AlertEvent.objects.create(alert=alert, at=now, actor=worker.name, action="opened")
            entries.append(audit.Entry(worker.name, "", worker.ip, "security.alert_open", "security.alert",
                                       str(alert.pk), {"rule": hit.rule, "severity": hit.severity,
                                                       "subject_kind": hit.kind, "subject": hit.subject,
                                                       "first_seq": ev.first_seq, "last_seq": ev.last_seq}))
            opened += 1
    return opened, updated, entries


def _prune(rules: Rules, until: dt.datetime) -> None:
    """Drops buckets no window or baseline reaches any more (relative to the newest record taken in, so a scan
    catching up after downtime still has its windows)."""
    t = int(until.timestamp())
    longest = max(rules[r].get("window_minutes", 0) for r in RULES) * 60
    with transaction.atomic():
        Tally.objects.filter(kind__in=MINUTE_KINDS, start__lt=t - max(longest, 3600) - 3600).delete()
        Tally.objects.filter(kind=PULL_H, start__lt=t - (rules["bulk_pull"]["baseline_days"] + 2) * 86400).delete()
        Tally.objects.filter(kind=TOTAL_H, start__lt=t - 8 * 86400).delete()
        Tally.objects.filter(kind=OFF_P, start__lt=t - 40 * 86400).delete()
