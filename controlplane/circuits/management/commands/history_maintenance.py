"""manage.py history_maintenance: one run of the history tables' upkeep (monthly
partitions ahead, retention), as the Celery task runs it every hour."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from controlplane.circuits.maintenance import history_maintenance


class Command(BaseCommand):
    help = (
        "Create the monthly partitions of transitions and audit events ahead and drop what "
        "is past retention; once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        done = history_maintenance()
        if done is None:
            raise CommandError("another history maintenance run is under way; try again")
        for table, names in done.created.items():
            cutoff = done.cutoffs[table]
            kept = "kept for ever" if cutoff is None else f"kept from {cutoff:%Y-%m-%d %H:%M}Z"
            listed = f" ({', '.join(names)})" if names else ""
            dropped = done.dropped[table]
            gone = f" ({', '.join(dropped)})" if dropped else ""
            self.stdout.write(
                f"{table}: {kept}; {len(names)} partitions created{listed},"
                f" {len(dropped)} dropped{gone}, {done.deleted[table]} rows deleted"
            )
