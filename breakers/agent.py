"""The Switchyard agent: reports local breakers to the control plane and obeys it.

One :class:`Agent` per process. It runs a daemon thread that sends
``POST /api/v1/agent/sync`` every ``interval`` seconds and within about 100 ms
of any local transition, and a second daemon thread that holds the long-poll
``GET /api/v1/agent/watch`` so that a forced state reaches the process within a
second. Nothing here runs on the protected call path: the registry transition
listener only appends to a bounded buffer and sets an event.

Fail-static: when the control plane is unreachable, slow, erroring or answers
garbage, the breakers keep running on the last config they were given. Every
request has a timeout; failures back off exponentially with jitter; transitions
wait in a bounded buffer (drop-oldest, with the drop count reported later).

Standard library only, like the rest of :mod:`breakers`.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import itertools
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
import urllib.parse
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from breakers import __version__, canary, wire
from breakers import clock as _clock
from breakers.config import CircuitBreakerConfig
from breakers.states import FORCED_STATES
from breakers.wire import PROTOCOL_VERSION, SYNC_PATH, WATCH_PATH

__all__ = ["PROTOCOL_VERSION", "Agent", "AgentError", "start_from_env"]

logger = logging.getLogger("breakers.agent")

# Limits. Each is a parameter of Agent where it makes sense to tune it.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # a desired state larger than this is refused
# Until the server says otherwise (``limits`` of its answer): at most this many breakers
# and transitions per sync and a body of at most this many bytes. A process with more
# breakers reports them over several back-to-back syncs (a round); a long transition
# backlog drains the same way.
MAX_TRANSITIONS_PER_SYNC = wire.DEFAULT_LIMITS["transitions"]
MAX_BREAKERS_PER_SYNC = wire.DEFAULT_LIMITS["breakers"]
MAX_BODY_BYTES = wire.DEFAULT_LIMITS["body_bytes"]
MAX_DROPPED_PER_SYNC = 2**31 - 1  # the server's bound; a larger count spans several syncs
# A breaker the control plane refused (a 400 naming it: an invalid name, the service's
# circuit limit, a timestamp out of range) is left out of reports this long, then tried.
REFUSED_BREAKER_SECONDS = 600.0
# Telemetry (docs/traffic.md): reports are cut at every sync and at every multiple of
# TELEMETRY_BUCKET_SECONDS of the wall clock; at most MAX_WAITING_REPORTS wait for the
# server's acknowledgement (the oldest are dropped beyond, and counted), and one report
# is at most MAX_REPORT_BYTES (a quarter of a sync's body when that is less): a process
# whose breakers grew more than that in one bucket sends several reports for it.
TELEMETRY_BUCKET_SECONDS = wire.TELEMETRY_BUCKET_SECONDS
MAX_WAITING_REPORTS = 60
# More waiting reports than the server remembers past its watermark (63) could have
# one stored twice or never: the bound of ``max_reports``.
MAX_REPORTS_BOUND = 62
MAX_REPORT_BYTES = 64 * 1024
# The items of a sync a 400 names: "transitions[3].at", "breakers[0].name".
_REFUSED_ITEM = re.compile(r"^(transitions|breakers|telemetry)\[(\d+)\]")
_FORCED = frozenset(FORCED_STATES)  # str enums: "forced_open" in _FORCED


class AgentError(Exception):
    """A sync or watch exchange failed; the agent backs off and keeps the last config.

    ``retry_after``: the seconds the server asked the agent to wait (``Retry-After`` of
    a 429 or 503), else None.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# The longest Retry-After the agent reads (still bounded by backoff_max when honoured).
MAX_RETRY_AFTER = 86_400.0


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After: <seconds>`` header; None when absent or not a number
    of seconds (an HTTP date is ignored: the agent's own backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN, negative
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _joined_size(items: list[bytes]) -> int:
    """Bytes of ``items`` as the elements of one compact JSON array (its commas)."""
    return sum(len(i) for i in items) + max(len(items) - 1, 0)


def _fitting(items: list[bytes], budget: int) -> int:
    """How many of ``items``, from the first, fit in ``budget`` bytes of a JSON array."""
    used = -1
    for count, item in enumerate(items):
        used += len(item) + 1
        if used > budget:
            return count
    return len(items)


class _Refused(AgentError):
    """A 400 to a sync. ``progress``: items it named were left out, so the next sync
    (sent at once, without backoff) differs from this one."""

    def __init__(self, message: str, progress: bool) -> None:
        super().__init__(message)
        self.progress = progress


@dataclass(frozen=True, slots=True)
class _Pending:
    """A local transition waiting for the server's acknowledgement."""

    id: int
    event: Any  # breakers.TransitionEvent


@dataclass(frozen=True, slots=True)
class _Report:
    """A telemetry report waiting for the server's acknowledgement (and its JSON)."""

    seq: int
    report: wire.TelemetryReportWire
    raw: bytes


def _growth(name: str, before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> Any:
    """The growth of one breaker's ``traffic()`` between two cuts, or None if none.

    A breaker whose counters went down is a new one under the same name: its counters
    are growth from zero. ``now["shadow"]``, when present, is its shadow candidate's
    (evaluation id, ``shadow_report()``), reported as its growth too.
    """
    if before is not None and any(now[c] < before[c] for c in wire.TELEMETRY_COUNTERS):
        before = None
    old: Mapping[int, int] = before["latency"] if before is not None else {}
    counters = {
        c: now[c] - (before[c] if before is not None else 0) for c in wire.TELEMETRY_COUNTERS
    }
    latency = [[i, n - old.get(i, 0)] for i, n in now["latency"].items() if n > old.get(i, 0)]
    shadow = _shadow_growth(before.get("shadow") if before else None, now.get("shadow"))
    if not latency and not any(counters.values()) and shadow is None:
        return None
    entry = {"name": name, **counters, "latency": latency}
    if shadow is not None:
        entry["shadow"] = shadow
    return entry


def _shadow_growth(before: Any, now: Any) -> wire.ShadowGrowthWire | None:
    """The growth of a shadow candidate's report between two cuts (None if none); a
    candidate of another evaluation than before grew from zero."""
    if now is None:
        return None
    evaluation, report = now
    old = None if before is None or before[0] != evaluation else before[1]
    counts = {c: report[c] - (old[c] if old else 0) for c in wire.SHADOW_COUNTERS}
    new = report["transition_count"] - (old["transition_count"] if old else 0)
    if new <= 0 and not any(counts.values()):
        return None
    transitions: list[wire.ShadowTransitionWire] = [
        {
            "from": e.from_state.value,
            "to": e.to_state.value,
            "at": wire.format_timestamp(e.at) or "",
            "reason": e.reason,
        }
        for e in (report["transitions"][-new:] if new > 0 else [])
    ]
    return {
        "evaluation": evaluation,
        "config_version": report["config_version"],
        "rejected": counts["rejected"],
        "unobserved": counts["unobserved"],
        "opened": counts["opened"],
        "half_opened": counts["half_opened"],
        "closed": counts["closed"],
        "transitions": transitions,
    }


def _state_str(state: Any) -> str:
    return str(getattr(state, "value", state))


def _check_float(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number between {low} and {high}, got {value!r}")
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = "greater than" if low_open else "between"
        rng = f"{low} and at most {high}" if low_open else f"{low} and {high}"
        raise ValueError(f"{name} must be a number {bound} {rng}, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer between {low} and {high}, got {value!r}")
    return value


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _Http:
    """One keep-alive HTTP/1.1 connection to the control plane, owned by one thread."""

    def __init__(self, parsed: urllib.parse.SplitResult, headers: dict[str, str]) -> None:
        self._parsed = parsed
        self._headers = headers
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None, timeout: float
    ) -> tuple[int, bytes, float | None]:
        """Send one request and return (status, body, Retry-After seconds or None);
        raise AgentError on any failure."""
        for attempt in (0, 1):
            conn = self._connection(timeout)
            try:
                headers = dict(self._headers)
                if body is not None:
                    headers["Content-Type"] = "application/json"
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read(MAX_RESPONSE_BYTES + 1)
                if len(data) > MAX_RESPONSE_BYTES:
                    self.close()
                    raise AgentError(f"response larger than {MAX_RESPONSE_BYTES} bytes")
                if response.will_close:
                    self.close()
                return response.status, data, _retry_after(response.getheader("Retry-After"))
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A kept-alive connection the server closed while idle: retry once, fresh.
                self.close()
                if attempt:
                    raise AgentError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from None
            except AgentError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise AgentError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from None
        raise AssertionError("unreachable")

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._parsed.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self._parsed.hostname or "", self._parsed.port, timeout=timeout)
        else:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def forget(self) -> None:
        """Drop the connection without closing it (after fork it belongs to the parent)."""
        self._conn = None


class _Backoff:
    """Exponential backoff with "equal jitter": half fixed, half random."""

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng

    def fail(self) -> float:
        self.failures += 1
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.failures - 1, 30))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def succeed(self) -> None:
        self.failures = 0


_agents: weakref.WeakSet[Agent] = weakref.WeakSet()


class Agent:
    """Reports every breaker of a registry to the control plane and applies its answers.

    ``url`` is the control plane's base URL (``http://host:port``), ``token`` the
    service's agent token (``sya_...``), ``service`` the service name the token
    belongs to. ``registry`` defaults to :data:`breakers.default_registry`.
    Tuning (seconds unless said otherwise; each is validated, ValueError names it):

    - ``interval`` (default 5): periodic sync; the server's ``poll_interval`` wins,
      bounded below by ``min_interval`` (default 1). Each process syncs at its own
      random phase of the interval, so a fleet started or delayed together does not
      keep syncing together.
    - ``coalesce`` (0.05): a local transition is sent this long after it happened,
      together with whatever else happened meanwhile.
    - ``request_timeout`` (5): every sync; ``watch_timeout`` (40): the long poll,
      longer than the server's hold (25).
    - ``backoff_initial`` (1) / ``backoff_max`` (60): exponential backoff with jitter
      after a failed exchange; transitions wait for it.
    - ``buffer_size`` (10,000 transitions): drop-oldest beyond it, drops are counted
      and reported.
    - ``report_delay_max`` (None): when to report what the control plane pushed:
      None = in the next periodic sync; a number = within that many seconds.
    - ``exit_flush_timeout`` (1): the one flush at interpreter exit.
    - ``watch`` (True): hold the long poll for sub-second propagation.
    - ``clock`` (:func:`breakers.clock.seconds`): the ``clock`` a sync reports, read
      right before the breakers' counters.

    More breakers than one sync may carry (the server's ``limits``) go out over
    several back-to-back syncs, a round; pending transitions travel in the round's
    last sync. A ``413`` halves the breakers per sync (down to one) and the same
    breakers are sent again at once.

    Use :meth:`start` / :meth:`stop`, or ``with Agent(...):``.
    """

    def __init__(
        self,
        url: str,
        token: str,
        service: str,
        *,
        registry: Any = None,
        instance_id: str | None = None,
        interval: float = 5.0,
        request_timeout: float = 5.0,
        watch: bool = True,
        watch_timeout: float = 40.0,
        coalesce: float = 0.05,
        buffer_size: int = 10_000,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        exit_flush_timeout: float = 1.0,
        min_interval: float = 1.0,
        report_delay_max: float | None = None,
        max_reports: int = MAX_WAITING_REPORTS,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = _clock.seconds,
    ) -> None:
        parsed = urllib.parse.urlsplit(url or "")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must be an http:// or https:// URL with a host, got {url!r}")
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if not isinstance(service, str) or not service or len(service) > 200:
            raise ValueError(f"service must be a string of 1 to 200 characters, got {service!r}")
        if instance_id is not None and (
            not isinstance(instance_id, str) or not 1 <= len(instance_id) <= 200
        ):
            raise ValueError(
                f"instance_id must be a string of 1 to 200 characters, got {instance_id!r}"
            )
        self.interval = _check_float("interval", interval, 0.0, 3600.0, low_open=True)
        self.min_interval = _check_float("min_interval", min_interval, 0.0, 3600.0, low_open=True)
        self.request_timeout = _check_float(
            "request_timeout", request_timeout, 0.0, 300.0, low_open=True
        )
        self.watch_timeout = _check_float("watch_timeout", watch_timeout, 0.0, 600.0, low_open=True)
        self.coalesce = _check_float("coalesce", coalesce, 0.0, 10.0)
        self.buffer_size = _check_int("buffer_size", buffer_size, 1, 10_000_000)
        self.max_reports = _check_int("max_reports", max_reports, 1, MAX_REPORTS_BOUND)
        self.backoff_initial = _check_float(
            "backoff_initial", backoff_initial, 0.0, 3600.0, low_open=True
        )
        self.backoff_max = _check_float("backoff_max", backoff_max, 0.0, 86_400.0, low_open=True)
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max must be at least backoff_initial ({self.backoff_initial}), "
                f"got {backoff_max!r}"
            )
        self.exit_flush_timeout = _check_float("exit_flush_timeout", exit_flush_timeout, 0.0, 60.0)
        self.report_delay_max = (
            None
            if report_delay_max is None
            else _check_float("report_delay_max", report_delay_max, 0.0, 3600.0)
        )
        if registry is None:
            import breakers

            registry = breakers.default_registry
        self.registry = registry
        self.url = url.rstrip("/")
        self.service = service
        self.watch_enabled = bool(watch)
        self._parsed = parsed
        self._base_path = parsed.path.rstrip("/")
        self.__token = token
        self._fixed_instance_id = instance_id
        self._wall = wall_clock
        self._mono = monotonic
        self._clock = clock
        self._rng = random.Random()
        self._init_runtime()
        self._running = False
        self._stop_event = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self._watch_thread: threading.Thread | None = None
        _agents.add(self)

    # -- state that a forked child must rebuild -------------------------------------------

    def _init_runtime(self) -> None:
        self.instance_id = self._fixed_instance_id or _default_instance_id()
        if self._fixed_instance_id and getattr(self, "_pid", None) not in (None, os.getpid()):
            # Two processes must never share an instance id: the child gets its own.
            self.instance_id = f"{self._fixed_instance_id}-{os.getpid()}"
        self._pid = os.getpid()
        # What a restart keeps: decides whether this process runs a canary config.
        self.identity = canary.stable_identity(self.instance_id, socket.gethostname(), self._pid)
        self._started_at = self._wall()
        self._lock = threading.Lock()  # buffer, counters, schedule
        self._apply_lock = threading.Lock()  # desired state, applied overrides
        self._sync_lock = threading.Lock()  # one sync exchange at a time
        self._wake = threading.Event()
        self._pending: deque[_Pending] = deque()
        self._next_transition_id = 0
        self._dropped = 0
        self._dropped_reported = 0  # of _dropped, what a successful sync has carried
        self._refused_breakers: dict[str, float] = {}  # name -> monotonic time to retry
        self._report_started_at = True  # False once refused (a wall clock far off)
        self._next_sync_at = self._mono()  # periodic schedule, or the end of a backoff
        # Where in each interval this process's periodic syncs fall (see _next_slot).
        self._phase = self._rng.random()
        self._soon: float | None = None  # a sync asked for by a transition or a change
        self._applying: int | None = None  # thread applying a desired state right now
        # The breakers of the current round still to send, oldest first, and whether
        # it reports every breaker (else only those its transitions name).
        self._round: deque[str] = deque()
        self._round_full = False
        self._full_due = True  # set by the sync loop: the periodic report is due
        self._round_done_full = False  # the last exchange completed a full round
        self._limits: dict[str, int] = {
            "breakers": MAX_BREAKERS_PER_SYNC,
            "transitions": MAX_TRANSITIONS_PER_SYNC,
            "body_bytes": MAX_BODY_BYTES,
        }
        # Telemetry: reports waiting for telemetry_through, the last cut's counters.
        self._cut_lock = threading.Lock()
        self._reports: deque[_Report] = deque()
        self._report_seq = 0
        self._reports_dropped = 0
        self._reports_dropped_reported = 0  # of _reports_dropped, what a sync carried
        self._baseline: dict[str, Any] | None = None  # name -> traffic() at the last cut
        self._cut_at = self._wall()
        self._chunk_cap: int | None = None  # breakers per sync after a 413, else None
        self._transition_cap: int | None = None  # transitions per sync after a 413
        if not hasattr(self, "_desired"):
            # What the breakers run now: a forked child inherits it with the breakers.
            self._desired: dict[str, Any] | None = None
            self._desired_version = 0
            self._server_interval: float | None = None
            self._agent_forced: dict[str, float | None] = {}  # name -> until (epoch) or None
            self._code_configs: dict[str, CircuitBreakerConfig] = {}
            # name -> (evaluation id, the candidate breaker) of the shadows applied
            self._shadows: dict[str, tuple[int, Any]] = {}
        self._sync_backoff = _Backoff(self.backoff_initial, self.backoff_max, self._rng)
        self._watch_backoff = _Backoff(self.backoff_initial, self.backoff_max, self._rng)
        self._watch_resume_at = 0.0  # the end of the watch's current backoff
        self._stats: dict[str, Any] = {
            "syncs_ok": 0,
            "syncs_failed": 0,
            "watch_changes": 0,
            "watch_timeouts": 0,
            "watch_failed": 0,
            "last_error": None,
            "last_sync_ok_at": None,
            "rounds": 0,  # complete reports of every breaker
            "too_large": 0,  # breakers or transitions skipped: alone over the body limit
        }

    # -- public API ------------------------------------------------------------------------

    def __repr__(self) -> str:
        # Never the token.
        return (
            f"<Agent service={self.service!r} url={self.url!r} "
            f"instance={self.instance_id!r} running={self._running}>"
        )

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def desired_version(self) -> int:
        """The service's desired-state version last applied from the control plane."""
        return self._desired_version

    @property
    def dropped_transitions(self) -> int:
        """Transitions dropped because the buffer was full (cumulative for this process)."""
        return self._dropped

    @property
    def pending_reports(self) -> int:
        """Telemetry reports waiting for the server's acknowledgement."""
        return len(self._reports)

    @property
    def dropped_reports(self) -> int:
        """Telemetry reports dropped because too many waited (cumulative, this process)."""
        return self._reports_dropped

    @property
    def pending_transitions(self) -> int:
        """Transitions waiting for the server's acknowledgement."""
        return len(self._pending)

    def stats(self) -> dict[str, Any]:
        """Counters for health checks and tests (a copy)."""
        with self._lock:
            out = dict(self._stats)
            out.update(
                pending_transitions=len(self._pending),
                dropped_transitions=self._dropped,
                pending_reports=len(self._reports),
                dropped_reports=self._reports_dropped,
                report_seq=self._report_seq,
                desired_version=self._desired_version,
                instance_id=self.instance_id,
            )
        return out

    def start(self) -> Agent:
        """Start the background threads (idempotent); returns self."""
        if self._running:
            return self
        self._running = True
        self._stop_event = threading.Event()
        # Telemetry counts from here: calls made while no agent ran are not reported.
        with self._cut_lock:
            self._baseline = None
        self._cut()
        self.registry.add_transition_listener(self._on_transition)
        self._start_threads()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Flush once (bounded by ``timeout``), then stop the threads."""
        if not self._running:
            return
        self._running = False
        self._stop_event.set()
        self._wake.set()
        with contextlib.suppress(KeyError, ValueError):
            self.registry.remove_transition_listener(self._on_transition)
        deadline = self._mono() + max(timeout, 0.0)
        if self._sync_thread is not None:
            self._sync_thread.join(max(0.0, deadline - self._mono()))
        remaining = deadline - self._mono()
        self._cut()  # the calls since the last cut go out with the final flush
        if remaining > 0 and (self._pending or self._reports or self._stats["syncs_ok"] == 0):
            self.flush(timeout=remaining)
        if self._watch_thread is not None:
            self._watch_http.close_from_other_thread()
            self._watch_thread.join(max(0.0, deadline - self._mono()))

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flush(self, timeout: float | None = None) -> bool:
        """Sync now from the calling thread; True if the server answered."""
        budget = self.request_timeout if timeout is None else min(timeout, self.request_timeout)
        if budget <= 0:
            return False
        if not self._sync_lock.acquire(timeout=budget):
            return False
        try:
            http_ = _Http(self._parsed, self._headers())
            deadline = self._mono() + budget
            try:
                # Pending transitions go in a round of the breakers they name, at once;
                # without any, every breaker is reported.
                self._full_due = not self._pending
                while True:
                    try:
                        more = self._sync_exchange(http_, budget)
                    except _Refused as exc:
                        if not exc.progress:
                            raise
                        more = True
                    left = deadline - self._mono()
                    if not more or left <= 0:
                        return True
                    budget = min(budget, left)
            except AgentError as exc:
                self._note_error("flush", exc)
                return False
            finally:
                http_.close()
        finally:
            self._sync_lock.release()

    def request_sync(self, delay: float = 0.0) -> None:
        """Ask for a sync within ``delay`` seconds (after the current backoff, if any)."""
        with self._lock:
            at = self._mono() + delay
            if self._soon is None or at < self._soon:
                self._soon = at
        self._wake.set()

    @classmethod
    def from_env(
        cls, *, registry: Any = None, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Agent:
        """Build an agent from SWITCHYARD_URL, SWITCHYARD_TOKEN and SWITCHYARD_SERVICE.

        SWITCHYARD_INTERVAL (seconds) is optional. A missing variable is a ValueError
        naming it.
        """
        env = os.environ if environ is None else environ
        values = {}
        for var in ("SWITCHYARD_URL", "SWITCHYARD_TOKEN", "SWITCHYARD_SERVICE"):
            value = env.get(var, "").strip()
            if not value:
                raise ValueError(f"{var} must be set to start the Switchyard agent")
            values[var] = value
        if "interval" not in kwargs and env.get("SWITCHYARD_INTERVAL", "").strip():
            raw = env["SWITCHYARD_INTERVAL"].strip()
            try:
                kwargs["interval"] = float(raw)
            except ValueError:
                raise ValueError(
                    f"SWITCHYARD_INTERVAL must be a number of seconds, got {raw!r}"
                ) from None
        return cls(
            values["SWITCHYARD_URL"],
            values["SWITCHYARD_TOKEN"],
            values["SWITCHYARD_SERVICE"],
            registry=registry,
            **kwargs,
        )

    # -- the call-path hook: enqueue only -------------------------------------------------

    def _on_transition(self, event: Any) -> None:
        """Registry transition listener: O(1), no I/O, never raises."""
        with self._lock:
            self._next_transition_id += 1
            if len(self._pending) >= self.buffer_size:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append(_Pending(self._next_transition_id, event))
            if self._applying == threading.get_ident():
                # Caused by the control plane's own command, which a whole fleet applies
                # at once: it already knows, so this goes out with the next report.
                delay = self._report_delay()
                if delay is None:
                    return
            else:
                delay = self.coalesce
            soon = self._mono() + delay
            if self._soon is None or soon < self._soon:
                self._soon = soon
        self._wake.set()

    # -- threads ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.__token}",
            "Accept": "application/json",
            "User-Agent": f"switchyard-breakers/{__version__}",
        }

    def _start_threads(self) -> None:
        self._sync_http = _Http(self._parsed, self._headers())
        self._watch_http = _ClosableHttp(self._parsed, self._headers())
        self._sync_thread = threading.Thread(
            target=self._sync_loop, name="switchyard-agent-sync", daemon=True
        )
        self._sync_thread.start()
        if self.watch_enabled:
            self._watch_thread = threading.Thread(
                target=self._watch_loop, name="switchyard-agent-watch", daemon=True
            )
            self._watch_thread.start()
        else:
            self._watch_thread = None

    def _report_delay(self) -> float | None:
        """When to report what the control plane pushed: None = in the next periodic
        sync (no extra request: a fleet woken at once must not sync at once), else a
        random delay up to ``report_delay_max`` seconds."""
        if self.report_delay_max is None:
            return None
        return self._rng.uniform(0, self.report_delay_max)

    def _effective_interval(self) -> float:
        if self._server_interval is None:
            return self.interval
        return max(self.min_interval, min(3600.0, self._server_interval))

    def _next_slot(self, now: float) -> float:
        """The next periodic sync: the first moment at least half an interval from ``now``
        that falls on this process's own phase of the interval (drawn at random at start).

        Steadily, one interval after the last. A fleet that was delayed together (a
        control plane that was slow or down, a deploy) goes back to its phases at once
        instead of syncing together from then on: each process returns to its place in
        the interval, so the fleet's syncs stay spread evenly over it."""
        interval = self._effective_interval()
        slots = math.ceil((now + interval / 2) / interval - self._phase)
        return (slots + self._phase) * interval

    def _sync_loop(self) -> None:
        stop = self._stop_event
        while not stop.is_set():
            self._cut_if_due()
            with self._lock:
                due = self._next_sync_at
                # While backing off, transitions wait for the next attempt.
                if self._soon is not None and not self._sync_backoff.failures:
                    due = min(due, self._soon)
                wait = due - self._mono()
            wait = min(wait, self._until_next_expiry(), self._until_next_cut())
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
                if stop.is_set():
                    break
                self._expire_overrides()
                continue
            self._expire_overrides()
            if not self._sync_lock.acquire(timeout=self.request_timeout):
                continue
            try:
                with self._lock:
                    self._full_due = self._mono() >= self._next_sync_at
                more = self._sync_exchange(self._sync_http, self.request_timeout)
            except _Refused as exc:
                # What the 400 named is dropped: the next sync goes at once. Otherwise
                # (nothing the agent can leave out) it backs off like any failure.
                delay = 0.0 if exc.progress else self._sync_backoff.fail()
                self._note_error("sync", exc)
                with self._lock:
                    self._stats["syncs_failed"] += 1
                    self._next_sync_at = self._mono() + delay
                continue
            except AgentError as exc:
                delay = self._failure_delay(self._sync_backoff, exc)
                self._note_error("sync", exc)
                with self._lock:
                    self._stats["syncs_failed"] += 1
                    self._next_sync_at = self._mono() + delay
                continue
            except Exception:  # a bug here must never kill the thread
                logger.exception("switchyard agent: unexpected error during sync")
                with self._lock:
                    self._next_sync_at = self._mono() + self._sync_backoff.fail()
                continue
            finally:
                self._sync_lock.release()
            with self._lock:
                self._sync_backoff.succeed()
                now = self._mono()
                if more:  # the round goes on, or more transitions wait: at once
                    self._soon = now
                elif self._round_done_full:
                    self._next_sync_at = self._next_slot(now)
        self._sync_http.close()

    def _watch_loop(self) -> None:
        stop = self._stop_event
        http_ = self._watch_http
        # The server's per-instance rate limit is keyed by the instance id.
        instance = urllib.parse.quote(self.instance_id, safe="")
        while not stop.is_set():
            since = self._desired_version
            path = f"{self._base_path}{WATCH_PATH}?since={since}&instance={instance}"
            try:
                status, body, retry_after = http_.request("GET", path, None, self.watch_timeout)
                if status == 204:
                    self._watch_backoff.succeed()
                    with self._lock:
                        self._stats["watch_timeouts"] += 1
                    continue
                desired = self._decode(status, body, "watch", retry_after)
                self._apply_desired(desired)
                self._watch_backoff.succeed()
                with self._lock:
                    self._stats["watch_changes"] += 1
                delay = self._report_delay()
                if delay is not None:
                    self.request_sync(delay)
            except AgentError as exc:
                if stop.is_set():
                    break
                with self._lock:
                    self._stats["watch_failed"] += 1
                self._note_error("watch", exc)
                delay = self._failure_delay(self._watch_backoff, exc)
                self._watch_resume_at = self._mono() + delay
                stop.wait(delay)
            except Exception:
                logger.exception("switchyard agent: unexpected error in watch")
                stop.wait(self._watch_backoff.fail())
        http_.close()

    # -- telemetry -------------------------------------------------------------------------

    def _next_boundary(self) -> float:
        """The first multiple of TELEMETRY_BUCKET_SECONDS after the last cut."""
        return (math.floor(self._cut_at / TELEMETRY_BUCKET_SECONDS) + 1) * TELEMETRY_BUCKET_SECONDS

    def _until_next_cut(self) -> float:
        return max(0.0, self._next_boundary() - self._wall())

    def _cut_if_due(self) -> None:
        if self._wall() >= self._next_boundary():
            self._cut()

    def _shadow_figures(self, breaker: Any) -> tuple[int, Any] | None:
        """(evaluation id, shadow_report()) of the breaker's candidate, if it runs one
        that the desired state started."""
        applied = self._shadows.get(breaker.name)
        if applied is None or getattr(breaker, "shadow_breaker", None) is not applied[1]:
            return None
        report = breaker.shadow_report()
        return None if report is None else (applied[0], report)

    def _report_budget(self) -> int:
        return max(1, min(MAX_REPORT_BYTES, self._limits["body_bytes"] // 4))

    def _cut(self) -> None:
        """End the current report: what every breaker's counters grew since the last
        cut becomes reports of the bucket the last cut fell in (none when nothing grew).
        The first cut only takes the counters to start from."""
        with self._cut_lock:
            now = self._wall()
            current = {}
            for breaker in self._breakers():
                traffic = getattr(breaker, "traffic", None)
                if traffic is not None:
                    figures: dict[str, Any] = dict(traffic())
                    shadow = self._shadow_figures(breaker)
                    if shadow is not None:
                        figures["shadow"] = shadow
                    current[breaker.name] = figures
            previous, started = self._baseline, self._cut_at
            self._baseline, self._cut_at = current, now
            if previous is None:
                return
            bucket = math.floor(started / TELEMETRY_BUCKET_SECONDS) * TELEMETRY_BUCKET_SECONDS
            grown = []
            for name, traffic in current.items():
                entry = _growth(name, previous.get(name), traffic)
                if entry is not None:
                    grown.append((entry, len(json.dumps(entry, separators=(",", ":")))))
            if not grown:
                return
            budget = self._report_budget() - 64  # the report's own seq, bucket, brackets
            chunks: list[list[Any]] = [[]]
            used = 0
            for entry, size in grown:
                if chunks[-1] and used + size + 1 > budget:
                    chunks.append([])
                    used = 0
                chunks[-1].append(entry)
                used += size + 1
            with self._lock:
                for chunk in chunks:
                    self._report_seq += 1
                    report: wire.TelemetryReportWire = {
                        "seq": self._report_seq,
                        "bucket": bucket,
                        "breakers": chunk,
                    }
                    raw = json.dumps(report, separators=(",", ":")).encode()
                    if len(self._reports) >= self.max_reports:
                        self._reports.popleft()
                        self._reports_dropped += 1
                    self._reports.append(_Report(self._report_seq, report, raw))

    def _report_batch(self, budget: int) -> list[_Report]:
        """The oldest waiting reports that fit in a quarter of ``budget`` bytes (the oldest
        alone when it fits in half). A report alone over half is dropped and counted."""
        with self._lock:
            while self._reports and len(self._reports[0].raw) > budget // 2:
                self._reports.popleft()
                self._reports_dropped += 1
                self._stats["too_large"] += 1
            waiting = list(self._reports)
        batch: list[_Report] = []
        used = -1
        for report in waiting:
            used += len(report.raw) + 1
            if used > (budget // 4 if batch else budget // 2):
                break
            batch.append(report)
        return batch

    def _forget_reports(self, through: int) -> int:
        """Forget the waiting reports up to ``through``; how many were forgotten."""
        forgotten = 0
        with self._lock:
            while self._reports and self._reports[0].seq <= through:
                self._reports.popleft()
                forgotten += 1
        return forgotten

    # -- one sync exchange -----------------------------------------------------------------

    def _sync_exchange(self, http_: _Http, timeout: float) -> bool:
        """Send one sync of the current round; apply the answer. Returns True when
        another sync should follow at once (the round goes on, more transitions wait).

        A round reports every breaker (or, for a transition between periodic reports in
        a process too large for one sync, only the breakers its transitions name) over
        as many syncs as the server's limits need; the pending transitions go in its
        last sync, once the server has accepted every earlier one, so that it knows the
        circuits they name and ``acked_through`` covers only what that sync sent.
        """
        self._round_done_full = False
        with self._lock:
            self._soon = None  # whatever asked for a sync until now is in this one
        if not self._round:
            self._start_round()
        self._cut()
        with self._lock:
            # The server adds what each sync reports: send only the drops it has not had.
            dropped = min(self._dropped - self._dropped_reported, MAX_DROPPED_PER_SYNC)
            dropped_reports = min(
                self._reports_dropped - self._reports_dropped_reported, MAX_DROPPED_PER_SYNC
            )
        instance = wire.encode_instance(
            self.instance_id, socket.gethostname(), os.getpid(), self._started_at, __version__
        )
        if not self._report_started_at:
            instance["started_at"] = None
        cap = self._breaker_cap()
        names = list(itertools.islice(self._round, cap))
        clock = self._clock()  # right before the counters are read
        breakers = self._snapshot(names)
        items = [json.dumps(b, separators=(",", ":")).encode() for b in breakers]
        envelope = len(
            json.dumps(
                wire.encode_sync_request(
                    self.service,
                    instance,
                    [],
                    [],
                    dropped,
                    clock=clock,
                    dropped_reports=dropped_reports,
                ),
                separators=(",", ":"),
            )
        )
        budget = self._limits["body_bytes"] - envelope
        reports = self._report_batch(budget)
        budget -= _joined_size([r.raw for r in reports])
        last = len(self._round) <= cap
        batch: list[_Pending] = []
        transitions: list[wire.TransitionWire] = []
        count = _fitting(items, budget)
        if last:
            batch, transitions, sizes = self._transition_batch(budget)
            count = _fitting(items, budget - _joined_size(sizes))
            if count < len(items):  # they do not fit beside the transitions: not yet
                last, batch, transitions = False, [], []
                count = _fitting(items, budget)
        if count == 0 and items:
            # One breaker alone is larger than a sync may be: it is left out of reports.
            self._skip_too_large(breakers[0]["name"], len(items[0]) + envelope)
            return True
        sent = breakers[:count]
        # Names of the round this sync settles: those sent and any gone or refused
        # before the first one left for the next sync.
        settled = len(names) if count == len(breakers) else names.index(breakers[count]["name"])
        with self._lock:
            more_waiting = len(self._pending) > len(batch)
        payload = wire.encode_sync_request(
            self.service,
            instance,
            sent,
            transitions,
            dropped,
            clock=clock,
            telemetry=[r.report for r in reports],
            dropped_reports=dropped_reports,
        )
        body = json.dumps(payload, separators=(",", ":")).encode()
        status, data, retry_after = http_.request(
            "POST", f"{self._base_path}{SYNC_PATH}", body, timeout
        )
        if status == 413:
            raise self._too_large([b["name"] for b in sent], batch, len(body), data)
        if status == 400:
            raise self._refused(data, batch, sent, reports)
        desired = self._decode(status, data, "sync", retry_after)
        self._take_limits(desired)
        with self._lock:
            self._dropped_reported += dropped
            self._reports_dropped_reported += dropped_reports
            for _ in range(min(settled, len(self._round))):
                self._round.popleft()
            round_over = last and not self._round
            if round_over and self._round_full:
                self._round_done_full = True
                self._stats["rounds"] += 1
        acked = desired.get("acked_through")
        if acked is not None and batch:
            # Never forget what was not sent in this request, whatever the server says.
            self._forget_through(min(acked, batch[-1].id))
        reports_left = False
        if reports:
            # Stored through telemetry_through; a server that does not answer it does
            # not store telemetry: what it was sent is forgotten.
            through = desired.get("telemetry_through")
            highest = reports[-1].seq
            forgotten = self._forget_reports(highest if through is None else min(through, highest))
            # A backlog (after an outage) drains in back-to-back syncs while they store it.
            reports_left = forgotten == len(reports) and bool(self._reports)
        self._apply_desired(desired)
        interval = desired.get("poll_interval")
        if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
            self._server_interval = float(interval)
        with self._lock:
            self._stats["syncs_ok"] += 1
            self._stats["last_sync_ok_at"] = self._wall()
            self._stats["last_error"] = None
        if not round_over or reports_left:
            return True
        return bool(more_waiting and batch and acked is not None and acked >= batch[-1].id)

    def _start_round(self) -> None:
        """Queue the breakers the next syncs report (the registry is read unlocked: the
        transition listener, on the call path, must not wait for it)."""
        refused = self._refused_breakers
        now = self._mono() if refused else 0.0
        names = [
            b.name for b in self._breakers() if not (refused and refused.get(b.name, now) > now)
        ]
        full = True
        if not self._full_due and self._pending and len(names) > self._breaker_cap():
            # A transition between periodic reports: the breakers it names, in one sync.
            with self._lock:
                wanted = {
                    p.event.breaker
                    for p in itertools.islice(self._pending, self._limits["transitions"])
                }
            named = [n for n in names if n in wanted]
            if len(named) <= self._breaker_cap():
                names, full = named, False
        with self._lock:
            self._round = deque(names)
            self._round_full = full

    def _breaker_cap(self) -> int:
        cap = self._limits["breakers"]
        return cap if self._chunk_cap is None else min(cap, self._chunk_cap)

    def _transition_batch(
        self, budget: int
    ) -> tuple[list[_Pending], list[wire.TransitionWire], list[bytes]]:
        """The oldest pending transitions, in id order, that fit in half of ``budget``
        bytes (at least one when it fits at all) and the server's count limit."""
        cap = self._limits["transitions"]
        if self._transition_cap is not None:
            cap = min(cap, self._transition_cap)
        with self._lock:
            pending = list(itertools.islice(self._pending, cap))
        batch: list[_Pending] = []
        encoded: list[wire.TransitionWire] = []
        sizes: list[bytes] = []
        used = -1
        for p in pending:
            item = wire.encode_transition(p.id, p.event)
            raw = json.dumps(item, separators=(",", ":")).encode()
            used += len(raw) + 1
            if used > (budget // 2 if batch else budget):
                break
            batch.append(p)
            encoded.append(item)
            sizes.append(raw)
        return batch, encoded, sizes

    def _skip_too_large(self, name: str, size: int) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                self._round.remove(name)
            self._refused_breakers[name] = self._mono() + REFUSED_BREAKER_SECONDS
            self._stats["too_large"] += 1
        logger.error(
            "switchyard agent: breaker %r alone makes a sync of %d bytes, over the "
            "control plane's limit: left out of reports for %.0f s",
            name,
            size,
            REFUSED_BREAKER_SECONDS,
        )

    def _too_large(
        self, names: list[str], batch: list[_Pending], size: int, data: bytes
    ) -> _Refused:
        """A 413: send less per sync. Halves the breakers per sync, or the transitions
        when the error names them (or no more breakers can go); one breaker or
        transition that alone is refused is left out and counted."""
        detail = data[:300].decode("utf-8", "replace").replace("\n", " ")
        message = f"sync: HTTP 413 to a body of {size} bytes: {detail}"
        try:
            errors = json.loads(data).get("errors")
        except (ValueError, AttributeError):
            errors = None
        transitions_named = isinstance(errors, dict) and "transitions" in errors
        if not isinstance(errors, dict) or "body" in errors:
            with self._lock:
                # The bodies accepted are smaller than this one (a proxy may say so too).
                self._limits["body_bytes"] = min(self._limits["body_bytes"], max(size - 1, 1))
        if len(names) > 1 and not (transitions_named and len(batch) > 1):
            self._chunk_cap = max(1, len(names) // 2)
        elif len(batch) > 1:
            self._transition_cap = max(1, len(batch) // 2)
        elif names:
            self._skip_too_large(names[0], size)
        elif batch:
            with self._lock:
                before = len(self._pending)
                self._pending = deque(p for p in self._pending if p.id != batch[0].id)
                self._dropped += before - len(self._pending)
                self._stats["too_large"] += 1
            logger.error("switchyard agent: transition %d alone is too large: dropped", batch[0].id)
        else:
            return _Refused(message, progress=False)
        return _Refused(message, progress=True)

    def _take_limits(self, desired: wire.SyncAnswer) -> None:
        limits = cast(dict[str, int], desired.get("limits") or {})  # decode_answer checked
        if not limits:
            return
        with self._lock:
            for name, value in limits.items():
                if self._limits.get(name) != value:
                    self._limits[name] = value
                    if name == "breakers":
                        self._chunk_cap = None
                    elif name == "transitions":
                        self._transition_cap = None

    def _refused(
        self,
        data: bytes,
        batch: list[_Pending],
        breakers: list[wire.BreakerWire],
        reports: list[_Report] | None = None,
    ) -> _Refused:
        """Leave out what a 400 names, so that one bad item cannot hold the rest back
        for ever: a named transition is dropped (counted in ``dropped_transitions`` and
        reported), a named breaker is left out of reports for REFUSED_BREAKER_SECONDS."""
        detail = data[:300].decode("utf-8", "replace").replace("\n", " ")
        try:
            errors = json.loads(data).get("errors")
        except (ValueError, AttributeError):
            errors = None
        if not isinstance(errors, dict):
            return _Refused(f"sync: HTTP 400: {detail}", progress=False)
        bad_ids: set[int] = set()
        bad_names: set[str] = set()
        bad_seqs: set[int] = set()
        reports = reports or []
        started_at = "instance.started_at" in errors and self._report_started_at
        if started_at:
            # This host's clock is far off: the process start is left out (restarts
            # are then not told apart) rather than never being heard at all.
            self._report_started_at = False
            logger.error("switchyard agent: the control plane refused the start time: %s", detail)
        for path in errors:
            found = _REFUSED_ITEM.match(str(path))
            if found is None:
                continue
            index = int(found.group(2))
            if found.group(1) == "transitions" and index < len(batch):
                bad_ids.add(batch[index].id)
            elif found.group(1) == "breakers" and index < len(breakers):
                bad_names.add(breakers[index]["name"])
            elif found.group(1) == "telemetry" and index < len(reports):
                bad_seqs.add(reports[index].seq)
        with self._lock:
            before = len(self._pending)
            if bad_ids:
                self._pending = deque(p for p in self._pending if p.id not in bad_ids)
            dropped = before - len(self._pending)
            self._dropped += dropped
            retry_at = self._mono() + REFUSED_BREAKER_SECONDS
            for name in bad_names:
                self._refused_breakers[name] = retry_at
            if bad_seqs:
                waiting = len(self._reports)
                self._reports = deque(r for r in self._reports if r.seq not in bad_seqs)
                self._reports_dropped += waiting - len(self._reports)
        if bad_seqs:
            logger.error(
                "switchyard agent: the control plane refused telemetry report(s) %s "
                "(dropped and counted): %s",
                ", ".join(str(q) for q in sorted(bad_seqs)),
                detail,
            )
        if dropped or bad_names:
            logger.error(
                "switchyard agent: the control plane refused %d transition(s) (dropped and "
                "counted) and %d breaker(s) (%s, left out of reports for %.0f s): %s",
                dropped,
                len(bad_names),
                ", ".join(sorted(bad_names)) or "none",
                REFUSED_BREAKER_SECONDS,
                detail,
            )
        progress = bool(dropped or bad_names or started_at or bad_seqs)
        return _Refused(f"sync: HTTP 400: {detail}", progress=progress)

    def _forget_through(self, acked: int) -> None:
        with self._lock:
            while self._pending and self._pending[0].id <= acked:
                self._pending.popleft()

    def _decode(
        self, status: int, data: bytes, what: str, retry_after: float | None = None
    ) -> wire.SyncAnswer:
        if status != 200:
            detail = data[:200].decode("utf-8", "replace").replace("\n", " ")
            raise AgentError(f"{what}: HTTP {status}: {detail}", retry_after)
        try:
            return wire.decode_answer(data)
        except ValueError as exc:
            raise AgentError(f"{what}: {exc}") from None

    def _failure_delay(self, backoff: _Backoff, exc: AgentError) -> float:
        """Seconds to wait after a failed exchange: the backoff's, or longer when the
        server said ``Retry-After`` (429 rate limited, 503), up to ``backoff_max``, with
        up to half again of jitter so that a fleet told the same does not return at once."""
        delay = backoff.fail()
        if exc.retry_after is not None:
            wanted = exc.retry_after * (1.0 + self._rng.uniform(0.0, 0.5))
            delay = max(delay, min(wanted, self.backoff_max))
        return delay

    def _note_error(self, what: str, exc: BaseException) -> None:
        message = str(exc).replace(self.__token, "***")
        with self._lock:
            first = self._stats["last_error"] is None
            self._stats["last_error"] = message
        # A down control plane must not flood the application's log: warn on the first
        # failure of a streak, then debug.
        level = logging.WARNING if first else logging.DEBUG
        logger.log(level, "switchyard agent %s failed (%s): %s", what, self.url, message)

    # -- wire formats ----------------------------------------------------------------------

    def _breakers(self) -> Iterable[Any]:
        for item in list(self.registry):
            if isinstance(item, str):
                item = self.registry.get(item)
            if item is not None:
                yield item

    def _snapshot(self, names: Iterable[str]) -> list[wire.BreakerWire]:
        """The reports of the breakers ``names`` that still exist and are not refused."""
        out = []
        refused = self._refused_breakers
        now = self._mono() if refused else 0.0
        for name in names:
            if refused and refused.get(name, now) > now:
                continue  # refused by the control plane a while ago
            breaker = self.registry.get(name)
            if breaker is None:
                continue
            self._code_configs.setdefault(breaker.name, breaker.config)
            out.append(
                wire.encode_breaker(
                    breaker.name,
                    breaker.get_state(),
                    breaker.config.to_dict(),
                    breaker.config_version,
                )
            )
        return out

    # -- applying the desired state --------------------------------------------------------

    def _apply_desired(self, desired: wire.SyncAnswer) -> None:
        with self._apply_lock:
            version = desired["desired_version"]
            if self._desired is not None and version < self._desired_version:
                return  # an older answer that arrived late: the newer state stays
            self._desired = {
                "desired_version": version,
                "breakers": desired.get("breakers", {}),
            }
            self._desired_version = version
            self._applying = threading.get_ident()
            try:
                self._apply_locked()
            finally:
                self._applying = None

    def _apply_locked(self) -> None:
        assert self._desired is not None
        wanted: dict[str, Any] = self._desired["breakers"]
        now = self._wall()
        for breaker in self._breakers():
            entry = wanted.get(breaker.name)
            try:
                self._apply_config(breaker, self._config_entry(entry))
            except Exception as exc:  # a bad central config must not stop the others
                logger.warning("switchyard agent: config for %r not applied: %s", breaker.name, exc)
            try:
                self._apply_override(breaker, self._wanted_override(entry), now)
            except Exception as exc:
                logger.warning(
                    "switchyard agent: override for %r not applied: %s", breaker.name, exc
                )
            try:
                self._apply_shadow(breaker, entry.get("shadow") if entry else None)
            except Exception as exc:
                logger.warning("switchyard agent: shadow for %r not applied: %s", breaker.name, exc)

    def _config_entry(self, entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The config a breaker should run: the entry's canary when this process is in
        its group (breakers.canary), else the entry's own. A canary that is not well
        formed is ignored (the current config runs), and logged."""
        found = entry.get("canary") if entry else None
        if not isinstance(found, dict):
            return entry
        try:
            if canary.selected(found.get("select") or {}, self.identity):
                return found
        except ValueError as exc:
            logger.warning("switchyard agent: canary ignored: %s", exc)
        return entry

    def _apply_config(self, breaker: Any, entry: Mapping[str, Any] | None) -> None:
        if not entry or "config_version" not in entry:
            return
        version = entry["config_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"config_version must be an integer, got {version!r}")
        if version == breaker.config_version or not isinstance(entry.get("config"), dict):
            return
        base = self._code_configs.setdefault(breaker.name, breaker.config)
        # from_dict keeps the code-only fields (exception filters, predicate) of base.
        config = CircuitBreakerConfig.from_dict(entry["config"], base=base)
        breaker.apply_config(config, version)

    def _wanted_override(self, entry: Mapping[str, Any] | None) -> Any:
        """The breaker's override; else, when a drill lists this instance, the drill as an
        override that ends at the drill's ``until`` (a drill without one is ignored: it
        must never outlive its bound)."""
        if not entry:
            return None
        override = entry.get("override")
        if override is not None:
            until = wire.override_until(override) if isinstance(override, dict) else None
            if until is None or until > self._wall():
                return override  # an operator's override takes precedence over a drill
        drill = entry.get("drill")
        if not isinstance(drill, dict) or not drill.get("until"):
            return None
        instances = drill.get("instances")
        if not isinstance(instances, list) or self.instance_id not in instances:
            return None
        reason = f"drill {drill.get('id')}: {drill.get('reason') or ''}".rstrip(": ")
        return {"state": "forced_open", "until": drill["until"], "reason": reason}

    def _apply_shadow(self, breaker: Any, shadow: Any) -> None:
        """Start, replace or end the breaker's shadow candidate (docs/sync-protocol.md)."""
        name = breaker.name
        if not isinstance(shadow, dict):
            if self._shadows.pop(name, None) is not None:
                breaker.clear_shadow()
            return
        evaluation, version = shadow.get("evaluation"), shadow.get("config_version")
        for field, value in (("evaluation", evaluation), ("config_version", version)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"shadow.{field} must be a non-negative integer, got {value!r}")
        applied = self._shadows.get(name)
        if applied is not None and applied[0] == evaluation:
            return
        if not isinstance(shadow.get("config"), dict):
            raise ValueError(f"shadow.config must be an object, got {shadow.get('config')!r}")
        base = self._code_configs.setdefault(name, breaker.config)
        breaker.shadow(CircuitBreakerConfig.from_dict(shadow["config"], base=base), version)
        self._shadows[name] = (cast(int, evaluation), breaker.shadow_breaker)

    def _apply_override(self, breaker: Any, override: Any, now: float) -> None:
        name = breaker.name
        until: float | None = None
        if isinstance(override, dict):
            until = wire.override_until(override)
            if until is not None and until <= now:
                override = None  # expired: the server will drop it too
        else:
            override = None
        if override is None:
            if name in self._agent_forced:
                del self._agent_forced[name]
                if _state_str(breaker.state) in _FORCED:
                    breaker.release()
            return
        target = override.get("state")
        if target not in _FORCED:
            raise ValueError(f"override state must be forced_open or forced_closed, got {target!r}")
        reason = override.get("reason") or None
        if _state_str(breaker.state) != target:
            if target == "forced_open":
                breaker.force_open(reason)
            else:
                breaker.force_closed(reason)
        self._agent_forced[name] = until

    def _until_next_expiry(self) -> float:
        untils = [u for u in list(self._agent_forced.values()) if u is not None]
        if not untils:
            return float("inf")
        return max(0.0, min(untils) - self._wall())

    def _expire_overrides(self) -> None:
        """Release overrides whose ``until`` has passed, without waiting for the server."""
        now = self._wall()
        if not any(u is not None and u <= now for u in list(self._agent_forced.values())):
            return
        with self._apply_lock:
            for breaker in self._breakers():
                until = self._agent_forced.get(breaker.name)
                if until is not None and until <= now:
                    del self._agent_forced[breaker.name]
                    if _state_str(breaker.state) in _FORCED:
                        breaker.release()
        self.request_sync(0.0)

    # -- fork and exit ---------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        was_running = self._running
        for h in ("_sync_http", "_watch_http"):
            conn = getattr(self, h, None)
            if conn is not None:
                conn.forget()
        self._init_runtime()
        self._stop_event = threading.Event()
        self._sync_thread = None
        self._watch_thread = None
        if was_running:
            self._cut()  # the child reports what its breakers do from here
            self._start_threads()

    def _exit_flush(self) -> None:
        if not self._running:
            return
        self._running = False
        self._stop_event.set()
        self._wake.set()
        if self.exit_flush_timeout > 0:
            self.flush(timeout=self.exit_flush_timeout)


class _ClosableHttp(_Http):
    """The watch connection: another thread may close its socket to end a long poll."""

    def close_from_other_thread(self) -> None:
        conn = self._conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _after_fork_in_child() -> None:
    for agent in list(_agents):
        try:
            agent._after_fork_in_child()
        except Exception:
            logger.exception("switchyard agent: restart after fork failed")


def _flush_at_exit() -> None:
    for agent in list(_agents):
        try:
            agent._exit_flush()
        except Exception:
            logger.debug("switchyard agent: exit flush failed", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)


def start_from_env(*, registry: Any = None, required: bool = True, **kwargs: Any) -> Agent | None:
    """Start an agent configured by SWITCHYARD_URL / SWITCHYARD_TOKEN / SWITCHYARD_SERVICE.

    With ``required=False`` and SWITCHYARD_URL unset, returns None (no agent).
    """
    if not required and not os.environ.get("SWITCHYARD_URL", "").strip():
        return None
    return Agent.from_env(registry=registry, **kwargs).start()
