"""The dashboard's socket: authenticate, join "fleet" (and "alerts" for users who may
see alerts), forward coalesced tile and alert updates.

The "fleet" group sends batches of typed events (controlplane/circuits/events.py);
each event only marks circuits as changed; at most every COALESCE_SECONDS the
consumer reads the marked circuits' tiles once (through dashboard.tiles, i.e.
fleet.py's fleet state) and sends one message. A
burst of thousands of events thus costs one query and one message per interval.
Alert events (controlplane/alerts/events.py) are coalesced the same way: the alerts
marked in an interval are read once and sent as one "alerts" message with the count of
firing alerts (the navigation badge). A socket opened with ``?traffic=<ids>`` (a page
with traffic charts) is also told, coalesced the same way, when the traffic of those
circuits grew ("traffic").

Each socket forwards only what its user may see: the teams whose services the user may
view (controlplane/circuits/access.py) are read once at connect, and every message is
cut to them (a tile, alert or traffic notice of another team's circuit is never sent).
A change of the user's memberships applies from the next connection (pages reconnect
on reload and after any drop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from controlplane.alerts.events import ALERTS_GROUP
from controlplane.circuits import access
from controlplane.circuits.events import FLEET_GROUP
from controlplane.circuits.models import Circuit
from dashboard.alerts import alert_rows_by_id
from dashboard.params import ParamError, parse_ids
from dashboard.tiles import tiles_by_id

COALESCE_SECONDS = 0.1
#: Circuits one socket may ask for traffic messages of (``?traffic=1,2``).
MAX_TRAFFIC_CIRCUITS = 20
# Close code for a refused socket (4000-4999 are the application's own).
REFUSED = 4403


class FleetConsumer(AsyncJsonWebsocketConsumer):
    """Live tiles for a logged-in user allowed to view circuits."""

    async def connect(self) -> None:
        self.pending: set[int] = set()
        self.pending_alerts: set[int] = set()
        self.pending_traffic: set[int] = set()
        self.traffic_of = _traffic_circuits(self.scope.get("query_string", b""))
        self.groups_joined: list[str] = []
        self.counts: dict[str, int] = {}
        self.flusher: asyncio.Task[None] | None = None
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=REFUSED)
            return
        self.teams, self.alert_teams, self.traffic_of = await database_sync_to_async(_visible)(
            user, self.traffic_of
        )
        if self.teams is not None and not self.teams:
            await self.close(code=REFUSED)
            return
        groups = [FLEET_GROUP]
        if self.alert_teams is None or self.alert_teams:
            groups.append(ALERTS_GROUP)
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        flusher = getattr(self, "flusher", None)
        if flusher is not None:
            flusher.cancel()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """The socket is one-way (clients resynchronise over HTTP): frames from the
        browser are not parsed, so a hostile one (JSON nested past the parser's
        recursion limit, say) cannot break the connection."""

    async def fleet_batch(self, message: dict[str, Any]) -> None:
        """The "fleet" group's one message: typed events, each only marking its
        circuits as changed."""
        for event in message["events"]:
            kind = event["type"]
            if kind == "fleet.transitions":
                self._mark(kind, (t["circuit_id"] for t in event["transitions"]))
            elif kind == "fleet.snapshots":
                self._mark(kind, (s["circuit_id"] for s in event["snapshots"]))
            elif kind in ("fleet.override", "fleet.config", "fleet.drill", "fleet.shadow"):
                self._mark(kind, [event["circuit_id"]])
            elif kind == "fleet.traffic":
                wanted = self.traffic_of.intersection(event["circuits"])
                if wanted:
                    self.pending_traffic.update(wanted)
                    self._count(kind)

    async def alerts_changed(self, event: dict[str, Any]) -> None:
        self.pending_alerts.update(a["id"] for a in event["alerts"])
        self._count(event["type"])

    def _mark(self, kind: str, circuit_ids: Iterable[int]) -> None:
        self.pending.update(circuit_ids)
        self._count(kind)

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(COALESCE_SECONDS)
        ids, alert_ids, counts = sorted(self.pending), sorted(self.pending_alerts), self.counts
        traffic = sorted(self.pending_traffic)
        self.pending, self.pending_alerts, self.counts, self.flusher = set(), set(), {}, None
        self.pending_traffic = set()
        if traffic:
            # The circuits whose series have new points: a page showing one fetches them.
            await self.send_json({"type": "traffic", "circuits": traffic})
        if ids:
            tiles = await database_sync_to_async(tiles_by_id)(ids, teams=self.teams)
            fleet_counts = {k: n for k, n in counts.items() if k.startswith("fleet.")}
            if tiles:
                await self.send_json({"type": "tiles", "tiles": tiles, "events": fleet_counts})
        if alert_ids:
            body = await database_sync_to_async(alert_rows_by_id)(alert_ids, self.alert_teams)
            n = counts.get("alerts.changed", 0)
            if body["alerts"]:
                await self.send_json({"type": "alerts", **body, "events": {"alerts.changed": n}})


def _visible(
    user: Any, traffic_of: frozenset[int]
) -> tuple[access.Scope, access.Scope, frozenset[int]]:
    """The teams whose circuits and alerts ``user`` may see (None: all), and the asked
    traffic circuits cut to the visible ones."""
    teams = access.scope(user, "circuits.view_circuit")
    alert_teams = access.scope(user, "alerts.view_alert")
    if teams is not None and traffic_of:
        visible = Circuit.objects.filter(pk__in=traffic_of, service__team__in=teams)
        traffic_of = frozenset(visible.values_list("pk", flat=True))
    return teams, alert_teams, traffic_of


def _traffic_circuits(query_string: bytes) -> frozenset[int]:
    """The circuits whose "traffic" messages a socket asked for (``?traffic=1,2``; a
    page with charts), parsed as every id list of the dashboard is
    (:func:`dashboard.params.parse_ids`, at most MAX_TRAFFIC_CIRCUITS). A socket cannot
    be answered a 400: one that asked for none, or not in ids, gets none."""
    values = parse_qs(query_string.decode("latin-1")).get("traffic")
    if not values:
        return frozenset()
    try:
        return frozenset(parse_ids(values[-1], "traffic", MAX_TRAFFIC_CIRCUITS))
    except ParamError:
        return frozenset()
