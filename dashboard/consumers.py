"""The dashboard's socket: authenticate, join "fleet", forward coalesced tile updates.

Each typed fleet event (controlplane/circuits/events.py) only marks circuits as
changed; at most every COALESCE_SECONDS the consumer reads the marked circuits' tiles
once (through dashboard.tiles, i.e. fleet.py's fleet state) and sends one message. A
burst of thousands of events thus costs one query and one message per interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from controlplane.circuits.events import FLEET_GROUP
from dashboard.tiles import tiles_by_id

COALESCE_SECONDS = 0.1
# Close code for a refused socket (4000-4999 are the application's own).
REFUSED = 4403


class FleetConsumer(AsyncJsonWebsocketConsumer):
    """Live tiles for a logged-in user allowed to view circuits."""

    async def connect(self) -> None:
        self.pending: set[int] = set()
        self.counts: dict[str, int] = {}
        self.flusher: asyncio.Task[None] | None = None
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=REFUSED)
            return
        if not await database_sync_to_async(user.has_perm)("circuits.view_circuit"):
            await self.close(code=REFUSED)
            return
        await self.channel_layer.group_add(FLEET_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(FLEET_GROUP, self.channel_name)
        flusher = getattr(self, "flusher", None)
        if flusher is not None:
            flusher.cancel()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The socket is one-way; clients resynchronise over HTTP."""

    # One handler per event type; each only marks circuits as changed.
    async def fleet_transitions(self, event: dict[str, Any]) -> None:
        self._mark(event["type"], (t["circuit_id"] for t in event["transitions"]))

    async def fleet_snapshots(self, event: dict[str, Any]) -> None:
        self._mark(event["type"], (s["circuit_id"] for s in event["snapshots"]))

    async def fleet_override(self, event: dict[str, Any]) -> None:
        self._mark(event["type"], [event["circuit_id"]])

    async def fleet_config(self, event: dict[str, Any]) -> None:
        self._mark(event["type"], [event["circuit_id"]])

    def _mark(self, kind: str, circuit_ids: Iterable[int]) -> None:
        self.pending.update(circuit_ids)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(COALESCE_SECONDS)
        ids, counts = sorted(self.pending), self.counts
        self.pending, self.counts, self.flusher = set(), {}, None
        if ids:
            tiles = await database_sync_to_async(tiles_by_id)(ids)
            await self.send_json({"type": "tiles", "tiles": tiles, "events": counts})
