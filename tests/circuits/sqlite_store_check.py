"""The sync's store on the embedded SQLite database (``make run``'s): run as a script in
its own process (the suite's database is PostgreSQL), it prints what it stored as JSON.

    python -m tests.circuits.sqlite_store_check /tmp/some/db.sqlite3
"""

import asyncio
import json
import os
import sys


def main(path: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    os.environ["DEBUG"] = "1"
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = path
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import orjson
    from django.utils import timezone

    from controlplane.circuits.choices import ConfigSource
    from controlplane.circuits.models import (
        Circuit,
        ConfigVersion,
        Instance,
        Rollout,
        RolloutTraffic,
        Service,
        Snapshot,
        Traffic10s,
        Transition,
    )
    from controlplane.circuits.sync.parse import parse
    from controlplane.circuits.sync.store import GroupCommit, Item, get_store

    service = Service.objects.create(name="embedded")

    def item(clock: float, calls: int, tid: int, started: str) -> Item:
        # Report ``tid`` of the process: ``calls`` calls in one bucket, with latencies.
        telemetry = [
            {
                "seq": tid,
                "bucket": 1_764_928_800,
                "breakers": [{"name": "db", "calls": calls, "latency": [[tid, calls]]}],
            }
        ]
        body = {
            "telemetry": telemetry,
            "instance": {"id": "web-1", "started_at": started},
            "clock": clock,
            "breakers": [
                {"name": "db", "state": "closed", "calls": calls, "config_version": 1},
                {"name": "idle", "state": "open"},
            ],
            "transitions": [
                {
                    "id": tid,
                    "breaker": "db",
                    "from": "closed",
                    "to": "open",
                    "at": "2026-11-27T10:04:00Z",
                    "reason": "failure_rate",
                }
            ],
        }
        return Item(service.pk, service.name, parse(orjson.dumps(body)), timezone.now())

    first, restarted = "2026-11-27T10:00:00Z", "2026-11-27T11:00:00Z"
    store = get_store()
    acked = []
    for batch in (
        [item(5.0, 10, 1, first)],
        [item(10.0, 60, 2, first), item(11.0, 70, 2, first)],  # one write, one instance
    ):
        store.write(batch)
        acked.append([i.acked_through for i in batch])
        if len(batch) == 1:
            # A canary rollout of "db" from then on: the instance runs version 1, the
            # baseline.
            db = Circuit.objects.get(name="db")
            Rollout.objects.create(
                circuit=db,
                from_version=ConfigVersion.objects.get(circuit=db, version=1),
                to_version=ConfigVersion.objects.create(
                    circuit=db, version=2, config={}, source=ConfigSource.OPERATOR
                ),
                select={"percent": 50, "salt": "s"},
                started_at=timezone.now(),
            )

    async def through_group_commit() -> int:
        late = item(2.0, 5, 1, restarted)
        await GroupCommit(store).submit(late)
        assert late.error is None, late.error
        return late.acked_through

    acked.append([asyncio.run(through_group_commit())])
    instance = Instance.objects.get()
    print(
        json.dumps(
            {
                "acked": acked,
                "instance": [instance.generation, instance.restarts, instance.acked_through],
                "transitions": Transition.objects.count(),
                "traffic": list(Traffic10s.objects.values_list("calls", "latency")),
                "rollout": list(RolloutTraffic.objects.values_list("group", "calls")),
                "snapshots": sorted(
                    Snapshot.objects.values_list(
                        "circuit__name", "generation", "calls", "calls_delta", "delta_seconds"
                    )
                ),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
