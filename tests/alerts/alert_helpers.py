"""Builders of fleet history for alert tests: circuits, instances, snapshots and
transitions written straight to the models (the durable rows evaluation reads)."""

import itertools
from datetime import UTC, datetime

from controlplane.circuits.models import Circuit, Instance, Service, Snapshot, Transition

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
WEBHOOK_SECRET = "s3cret-s3cret-s3cret"


class Fleet:
    """Writes a fleet's rows: ``report`` a snapshot, ``move`` a transition, ``sync`` an
    instance (liveness is the instance's ``last_seen``, not the snapshot's write)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._seq = itertools.count(1)

    def circuit(self, name: str = "db") -> Circuit:
        return Circuit.objects.get_or_create(service=self.service, name=name)[0]

    def instance(self, name: str = "web-1", *, seen: datetime = T0) -> Instance:
        inst, created = Instance.objects.get_or_create(
            service=self.service, instance_id=name, defaults={"first_seen": seen, "last_seen": seen}
        )
        if not created and inst.last_seen != seen:
            inst.last_seen = seen
            inst.save(update_fields=["last_seen"])
        return inst

    def sync(self, at: datetime, instance: str = "web-1") -> Instance:
        """The instance synced at ``at`` (its snapshot rows left as they are)."""
        return self.instance(instance, seen=at)

    def report(
        self,
        circuit: Circuit,
        state: str,
        at: datetime,
        *,
        instance: str = "web-1",
        failure_rate: float | None = None,
        since: datetime | None = None,
    ) -> Snapshot:
        inst = self.sync(at, instance)
        snap, _ = Snapshot.objects.update_or_create(
            instance=inst,
            circuit=circuit,
            defaults={
                "state": state,
                "updated_at": at,
                "failure_rate": failure_rate,
                "state_since": since or at,
            },
        )
        return snap

    def move(
        self,
        circuit: Circuit,
        from_state: str,
        to_state: str,
        at: datetime,
        *,
        instance: str = "web-1",
    ) -> Transition:
        inst = self.instance(instance, seen=at)
        return Transition.objects.create(
            instance=inst,
            circuit=circuit,
            seq=next(self._seq),
            from_state=from_state,
            to_state=to_state,
            at=at,
            reason="failure_rate",
            received_at=at,
        )


class Receiver:
    """A real webhook receiver on 127.0.0.1: records each POST, answers ``statuses`` in
    turn (then 200), optionally holding each answer ``delay`` seconds."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        import http.server
        import threading

        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.delay:
                    import time

                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict]:
        import json

        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
