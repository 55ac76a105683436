"""Periodic jobs of the security app, run by the Huey worker that `shuzheng serve` starts."""

import logging

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

log = logging.getLogger(__name__)


@db_periodic_task(crontab(minute="*"))
def scan_for_anomalies() -> dict:
    """Every minute: the audit records since the last scan, through the anomaly rules (security.alerts)."""
    from shuzheng.security import alerts

    try:
        return alerts.scan().as_dict()
    except alerts.RulesError as exc:  # a broken alert-rules.json: say so every minute until it is fixed
        log.error("security scan not run: %s", exc)
        return {"error": str(exc)}
