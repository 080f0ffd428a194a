"""The sync request as msgspec structs: the wire type and the parsed value in one.

msgspec checks types, ranges and lengths while decoding (in C); :mod:`.parse` checks
the rest (names, states, timestamps' range, configs, duplicates, list limits). The
structs refuse fields they do not know, so that a body they take has the sync's own
shallow shape; :mod:`.parse` drops unknown fields first when there are any, so a newer
agent can talk to an older server. A breaker's config stays raw JSON text: agents send
the same one with every sync, and it is checked once per distinct text.
"""

from datetime import datetime
from typing import Annotated

import msgspec

from breakers import wire as library_wire
from breakers.breaker import SHADOW_TRANSITIONS_KEPT
from controlplane.circuits.choices import (
    HOSTNAME_MAX_LENGTH,
    LIBRARY_VERSION_MAX_LENGTH,
    MAX_COUNTER,
    MAX_PID,
    MAX_RETRY_AFTER,
)

PROTOCOL_VERSION = library_wire.PROTOCOL_VERSION
#: Transitions an agent may report dropped in one sync (the instance's total saturates).
MAX_DROPPED_PER_SYNC = MAX_PID
#: The agent's clock: seconds since its library started (about 31,700 years).
MAX_CLOCK = 1e12

Counter = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNTER)]
Small = Annotated[int, msgspec.Meta(ge=0, le=MAX_PID)]
Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Moment = Annotated[datetime, msgspec.Meta(tz=True)]
Clock = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_CLOCK)]


class Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """The base of the sync's structs: immutable, strict about fields, and not tracked
    by Python's cyclic garbage collector. A decoded sync is a tree of them (no cycle
    can form), and a worker decodes hundreds per second: tracked, the ones alive
    across collections would make each full collection longer and more frequent.
    Subclasses restate ``frozen=True``: msgspec inherits the options, but mypy reads a
    subclass without it as a mutable one."""


class Instance(Wire, frozen=True):
    """The reporting process."""

    id: str
    hostname: Annotated[str, msgspec.Meta(max_length=HOSTNAME_MAX_LENGTH)] | None = None
    pid: Small | None = None
    started_at: Moment | None = None
    library_version: Annotated[str, msgspec.Meta(max_length=LIBRARY_VERSION_MAX_LENGTH)] | None = (
        None
    )


class Breaker(Wire, frozen=True):
    """One breaker's state and cumulative counters in the reporting process."""

    name: str
    state: str
    config_version: Small = 0
    config: msgspec.Raw = msgspec.Raw()  # JSON text; empty when left out
    calls: Counter = 0
    successes: Counter = 0
    failures: Counter = 0
    slow_calls: Counter = 0
    rejected: Counter = 0
    trip_count: Counter = 0
    failure_rate: Rate | None = None
    state_since: Moment | None = None
    retry_after: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_RETRY_AFTER)] | None = None

    def counters(self) -> tuple[int, int, int, int, int, int]:
        """The cumulative counters, in the order of :data:`COUNTERS`."""
        return (
            self.calls,
            self.successes,
            self.failures,
            self.slow_calls,
            self.rejected,
            self.trip_count,
        )


#: The cumulative counters of a breaker, as stored on its snapshot.
COUNTERS = ("calls", "successes", "failures", "slow_calls", "rejected", "trip_count")


class Transition(Wire, frozen=True):
    """One state change with its agent-assigned id (ids grow by one per process)."""

    id: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNTER)]
    breaker: str
    from_state: str = msgspec.field(name="from")
    to_state: str = msgspec.field(name="to")
    at: Moment
    reason: str
    failure_rate: Rate | None = None
    calls: Small | None = None
    failures: Small | None = None
    config_version: Small | None = None


#: Latency bucket indexes the wire takes (the library's buckets are fewer:
#: :data:`breakers.latency.BUCKET_COUNT`, checked by :mod:`.parse`).
MAX_LATENCY_INDEX = 1023
#: A report's bucket: Unix seconds up to the year 9999.
MAX_BUCKET = 253_402_300_799
#: Seconds one telemetry report's bucket covers (docs/traffic.md).
REPORT_SECONDS = 10

LatencyPair = tuple[Annotated[int, msgspec.Meta(ge=0, le=MAX_LATENCY_INDEX)], Counter]


#: Would-be transitions one shadow entry carries at most (what the library keeps).
MAX_SHADOW_TRANSITIONS = SHADOW_TRANSITIONS_KEPT


class ShadowTransition(Wire, frozen=True):
    """A transition a shadow candidate would have made."""

    from_state: str = msgspec.field(name="from")
    to_state: str = msgspec.field(name="to")
    at: Moment
    reason: str


class ShadowGrowth(Wire, frozen=True):
    """What a breaker's shadow candidate would have done inside a report's bucket
    (breakers.wire.ShadowGrowthWire): its evaluation, the growth of its counters and
    its would-be transitions."""

    evaluation: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNTER)]
    config_version: Small = 0
    rejected: Counter = 0
    unobserved: Counter = 0
    opened: Counter = 0
    half_opened: Counter = 0
    closed: Counter = 0
    transitions: Annotated[
        list[ShadowTransition], msgspec.Meta(max_length=MAX_SHADOW_TRANSITIONS)
    ] = []


class Growth(Wire, frozen=True):
    """How much one breaker's counters grew inside a report's bucket, and the latency
    histogram's changed buckets as [index, count] pairs (``shadow``: its shadow
    candidate's, while one runs)."""

    name: str
    calls: Counter = 0
    successes: Counter = 0
    failures: Counter = 0
    slow_calls: Counter = 0
    rejected: Counter = 0
    fallbacks: Counter = 0
    latency: Annotated[list[LatencyPair], msgspec.Meta(max_length=MAX_LATENCY_INDEX + 1)] = []
    shadow: ShadowGrowth | None = None


#: A report's counters, in the order of the traffic tables' columns.
TRAFFIC_COUNTERS = ("calls", "successes", "failures", "slow_calls", "rejected", "fallbacks")


class Report(Wire, frozen=True):
    """One telemetry report: what the process's breakers did inside one 10-second
    bucket (``bucket``: its start, Unix seconds), numbered by ``seq`` per process start."""

    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNTER)]
    bucket: Annotated[int, msgspec.Meta(ge=0, le=MAX_BUCKET)]
    breakers: list[Growth] = []


class Sync(Wire, frozen=True):
    """A sync request: the process, its breakers, their transitions since the last
    acknowledged one, the agent's clock when it read the counters, and the telemetry
    reports not yet acknowledged (docs/traffic.md)."""

    instance: Instance
    protocol: int = PROTOCOL_VERSION
    service: str | None = None
    clock: Clock | None = None
    breakers: list[Breaker] = []
    transitions: list[Transition] = []
    dropped_transitions: Annotated[int, msgspec.Meta(ge=0, le=MAX_DROPPED_PER_SYNC)] = 0
    telemetry: list[Report] = []
    dropped_reports: Annotated[int, msgspec.Meta(ge=0, le=MAX_DROPPED_PER_SYNC)] = 0


decoder = msgspec.json.Decoder(Sync)

#: Each struct's wire names, for dropping what a newer agent sends that this server
#: does not know.
FIELDS: dict[str, frozenset[str]] = {
    cls.__name__: frozenset(cls.__struct_encode_fields__)
    for cls in (Instance, Breaker, Transition, ShadowTransition, ShadowGrowth, Growth, Report, Sync)
}
