from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from shuzheng.core.errors import ServiceError


@db_periodic_task(crontab(minute="*/5"))
def harvest_due_sources():
    """Every source whose interval has passed since its last run (a failed run waits its interval too)."""
    from shuzheng.harvest import services
    from shuzheng.org.services import Actor

    actor = Actor(label="scheduler:harvest", ip="127.0.0.1", operator=True)
    for name in services.due_sources():
        try:
            services.run(actor, name)
        except ServiceError:
            continue  # already running elsewhere
