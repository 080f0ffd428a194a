"""manage.py traffic_maintenance: one run of the traffic tables' upkeep (partitions
ahead, roll-ups, retention), as the Celery task runs it every minute."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from controlplane.circuits.maintenance import traffic_maintenance


class Command(BaseCommand):
    help = (
        "Create the traffic partitions ahead, roll 10 s rows up to minutes and minutes to "
        "hours, and drop what is past retention; once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        done = traffic_maintenance()
        if done is None:
            raise CommandError("another traffic maintenance run is under way; try again")
        for table, names in done.created.items():
            self.stdout.write(f"{table}: {len(names)} partitions created", ending="")
            self.stdout.write(f" ({', '.join(names)})" if names else "")
        for rolled in done.rolled:
            self.stdout.write(
                f"roll-up {rolled.resolution}: through {rolled.through:%Y-%m-%d %H:%M}Z,"
                f" {rolled.rows} rows written in {rolled.windows} windows"
            )
        for table, names in done.dropped.items():
            listed = f" ({', '.join(names)})" if names else ""
            self.stdout.write(
                f"{table}: {len(names)} partitions dropped{listed},"
                f" {done.deleted[table]} rows deleted"
            )
