"""Background jobs of sharing, run by the Huey worker that `shuzheng serve` starts: webhook fan-out, each
delivery's first try and the minute's sweep of due retries; bulk exports; escalation of overdue applications."""

import logging

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from shuzheng.sharing import events, webhooks

log = logging.getLogger(__name__)
WORKER = webhooks.WORKER


@db_task()
def fan_out_event(event: dict) -> int:
    """The inprocess transport's consumer: the event's deliveries, each of whose first try is queued."""
    return events.handle_event(event)


@db_task()
def deliver(delivery_id: str) -> str:
    """One try of one delivery, if it is still due (a sweep may have taken it first). Returns its state."""
    delivery = webhooks.deliver(delivery_id)
    return delivery.state if delivery is not None else ""


@db_periodic_task(crontab(minute="*"))
def deliver_due() -> int:
    """Every minute: retry the deliveries whose backoff has passed (and any whose first job was lost)."""
    return webhooks.deliver_due()


@db_task()
def run_export(export_id: str) -> str:
    """One bulk export (库表/文件): written with its recipient's watermark; failures are on the Export row."""
    from shuzheng.sharing import gateway

    try:
        return gateway.write(export_id).state
    except Exception:
        log.exception("export %s failed", export_id)
        return "failed"


@db_periodic_task(crontab(minute="*/10"))
def escalate_overdue() -> int:
    """Every ten minutes: applications past the provider's deadline go to the platform office."""
    from shuzheng.sharing import services

    return services.escalate_overdue(WORKER)


@db_periodic_task(crontab(minute="*"))
def ship_gateway_journal() -> int:
    """Every minute: carry gateway journal lines into the audit trail, notably those of server processes that
    ended before their own shipper did."""
    from shuzheng.sharing.recorder import recorder

    return recorder.ship()
