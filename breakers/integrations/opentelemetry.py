"""OpenTelemetry for every breaker of a registry (``pip install
"switchyard-breakers[otel]"``: the OpenTelemetry API; bring the SDK and exporters your
application already configures)::

    from breakers.integrations.opentelemetry import instrument

    instrument()  # the default registry, the global meter and tracer providers

- **State changes** become an event ``circuit_breaker.state_change`` on the span
  current where the change happened (the call that tripped the breaker, or an
  operator's force arriving through the agent), with the breaker, both states, the
  reason and the window's failure rate. The library already logs each change (logger
  ``breakers.breaker``, INFO), which OpenTelemetry's logging bridge exports as log
  records.
- **Counters** are observed from the breakers' own cumulative counters at each
  collection (no cost on the call path): ``circuit_breaker.calls`` by ``outcome``
  (success, failure, ignored), ``circuit_breaker.rejected_calls``,
  ``circuit_breaker.slow_calls``, ``circuit_breaker.fallbacks``, and the gauge
  ``circuit_breaker.state`` (1 for the breaker's current state, 0 for the others).
  Every point carries ``circuit_breaker.name``.
- **Latency** is the histogram ``circuit_breaker.call.duration`` (seconds) of every call
  that ran, with ``outcome``. It is recorded from a call listener, which makes each
  call read the clock and call the listener (measured in
  ``benchmarks/bench_integrations.py``); ``latency=False`` leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        "breakers.integrations.opentelemetry needs opentelemetry-api: "
        'pip install "switchyard-breakers[otel]"'
    ) from exc

from ..breaker import CallEvent, TransitionEvent
from ..registry import CircuitBreakerRegistry, default_registry
from ..states import CircuitState

__all__ = ["Instrumentation", "instrument"]

_SCOPE = "breakers"
_STATES = tuple(state.value for state in CircuitState)


class Instrumentation:
    """What :func:`instrument` set up; ``uninstrument()`` removes the listeners."""

    def __init__(
        self,
        registry: CircuitBreakerRegistry,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        latency: bool = True,
    ) -> None:
        from .. import __version__

        self.registry = registry
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._tracer_provider = tracer_provider
        meter.create_observable_counter(
            "circuit_breaker.calls",
            callbacks=[self._calls],
            unit="{call}",
            description="Calls that ran through the breaker, by outcome",
        )
        meter.create_observable_counter(
            "circuit_breaker.rejected_calls",
            callbacks=[self._counter("rejected")],
            unit="{call}",
            description="Calls the breaker rejected without running them",
        )
        meter.create_observable_counter(
            "circuit_breaker.slow_calls",
            callbacks=[self._counter("slow_calls")],
            unit="{call}",
            description="Calls slower than the breaker's slow-call duration",
        )
        meter.create_observable_counter(
            "circuit_breaker.fallbacks",
            callbacks=[self._counter("fallbacks")],
            unit="{call}",
            description="Calls answered by a fallback",
        )
        meter.create_observable_gauge(
            "circuit_breaker.state",
            callbacks=[self._state],
            unit="1",
            description="1 for the breaker's current state, 0 for the others",
        )
        self._duration = (
            meter.create_histogram(
                "circuit_breaker.call.duration",
                unit="s",
                description="Duration of the calls that ran through the breaker",
            )
            if latency
            else None
        )
        registry.add_transition_listener(self._on_transition)
        if self._duration is not None:
            registry.add_call_listener(self._on_call)

    def uninstrument(self) -> None:
        """Stop the span events and latency records (observed counters stay with the
        meter, as OpenTelemetry instruments cannot be removed)."""
        self.registry.remove_transition_listener(self._on_transition)
        self.registry.remove_call_listener(self._on_call)

    # -- observed at each collection --------------------------------------------------------

    def _calls(self, options: CallbackOptions) -> Iterable[Observation]:
        for breaker in self.registry:
            t = breaker.traffic()
            name = {"circuit_breaker.name": breaker.name}
            yield Observation(t["successes"], {**name, "outcome": "success"})
            yield Observation(t["failures"], {**name, "outcome": "failure"})
            ignored = t["calls"] - t["successes"] - t["failures"]
            yield Observation(ignored, {**name, "outcome": "ignored"})

    def _counter(self, key: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for breaker in self.registry:
                traffic: dict[str, Any] = dict(breaker.traffic())
                yield Observation(traffic[key], {"circuit_breaker.name": breaker.name})

        return observe

    def _state(self, options: CallbackOptions) -> Iterable[Observation]:
        for breaker in self.registry:
            current = breaker.state.value
            for state in _STATES:
                yield Observation(
                    1 if state == current else 0,
                    {"circuit_breaker.name": breaker.name, "circuit_breaker.state": state},
                )

    # -- listeners ------------------------------------------------------------------------------

    def _on_transition(self, event: TransitionEvent) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {
            "circuit_breaker.name": event.breaker,
            "circuit_breaker.from_state": event.from_state.value,
            "circuit_breaker.to_state": event.to_state.value,
            "circuit_breaker.reason": event.reason,
        }
        if event.failure_rate is not None:
            attributes["circuit_breaker.failure_rate"] = event.failure_rate
        span.add_event("circuit_breaker.state_change", attributes)

    def _on_call(self, event: CallEvent) -> None:
        if event.duration is not None and self._duration is not None:
            self._duration.record(
                event.duration, {"circuit_breaker.name": event.breaker, "outcome": event.outcome}
            )


def instrument(
    registry: CircuitBreakerRegistry | None = None,
    *,
    meter_provider: Any = None,
    tracer_provider: Any = None,
    latency: bool = True,
) -> Instrumentation:
    """Export the breakers of ``registry`` (default: the process-wide one) through
    OpenTelemetry (see the module's docstring). ``meter_provider`` defaults to the
    global one."""
    return Instrumentation(
        default_registry if registry is None else registry,
        meter_provider,
        tracer_provider,
        latency,
    )
