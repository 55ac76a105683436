"""Periodic jobs of the audit app, run by the Huey worker that `shuzheng serve` starts."""

import logging

from django.db import transaction
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from shuzheng.audit import services
from shuzheng.org.services import Actor

log = logging.getLogger(__name__)


@db_periodic_task(crontab(minute="17", hour="2"))
def nightly_chain_verification():
    """Verifies the whole chain every night and records the outcome in the chain itself, so a break is
    on record (with the first bad seq) for the audit administrator even if nobody runs the command."""
    result = services.verify()
    if not result.intact:
        log.error("audit chain broken at record %s: %s", result.first_bad_seq, result.reason)
    with transaction.atomic():
        services.record(Actor(label="worker", ip="127.0.0.1", operator=True), "audit.verify",
                        object_type="audit.auditrecord", summary=result.as_dict())
    return result.as_dict()


@db_periodic_task(crontab(minute="*/5"))
def sign_chain_head():
    """Every five minutes, signs the chain head with SM2 if it moved since the last signature (after checking
    the records since that signature). A refusal means the chain was edited: it is logged as an error, and
    the nightly verification records it in the trail."""
    try:
        made = services.sign_head()
    except services.SigningRefused as exc:
        log.error("audit head not signed: %s", exc.detail)
        return {"signed": False, "reason": str(exc.detail)}
    return {"signed": made is not None, "seq": made.seq if made else None}
