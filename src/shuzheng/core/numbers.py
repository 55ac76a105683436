"""Human-readable serial numbers that restart every day (JC20261129-0001, GX20261129-0001)."""

import datetime as dt


def next_daily(counter_model, day: dt.date) -> int:
    """The day's next number from `counter_model` (a model with a `day` primary key and a `last` integer).
    Must run inside the caller's transaction: the day's row stays locked until it commits, so a concurrent
    caller waits and then reads the number this one took."""
    counter_model.objects.bulk_create([counter_model(day=day, last=0)], ignore_conflicts=True)
    counter = counter_model.objects.select_for_update().get(day=day)
    counter.last += 1
    counter.save(update_fields=["last"])
    return counter.last
