"""Background jobs of the ingest app, run by the Huey worker that `shuzheng serve` starts."""

import logging

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from shuzheng.core.errors import ServiceError
from shuzheng.ingest import schedule, services
from shuzheng.org.services import Actor

log = logging.getLogger(__name__)
WORKER = Actor(label="worker", ip="127.0.0.1", operator=True)


@db_task()
def run_source(source_id: str) -> str:
    """One scheduled or requested pull; a refused or failed pull is on its Load row and in the audit."""
    try:
        return str(services.run_source(WORKER, source_id).id)
    except ServiceError as exc:
        log.warning("pull %s failed: %s", source_id, exc.detail)
        return ""


@db_periodic_task(crontab(minute="*/10"))
def schedule_pulls() -> int:
    """Every ten minutes: clean up interrupted loads, then queue each pull whose update cycle has come."""
    services.recover_interrupted()
    due = schedule.due_sources()
    for source in due:
        run_source(str(source.id))
    return len(due)
