"""breakers.integrations.opentelemetry with the real OpenTelemetry SDK (in-memory metric
reader and span exporter): counters from the breakers' own counters, the state gauge,
the latency histogram, and state changes as events on the current span."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry
from breakers.integrations.opentelemetry import instrument


class Down(Exception):
    pass


def fail() -> None:
    raise Down


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def value(found: dict[str, list[Any]], name: str, **attributes: str) -> Any:
    matches = [
        p for p in found[name] if all(p.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(matches) == 1, (name, attributes, found[name])
    return matches[0]


@pytest.fixture
def setup() -> Any:
    registry = CircuitBreakerRegistry()
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    instrumentation = instrument(registry, meter_provider=meters)
    yield registry, reader, spans, tracers.get_tracer("test"), instrumentation
    instrumentation.uninstrument()
    meters.shutdown()


def test_counters_state_and_latency_follow_the_breakers(setup: Any) -> None:
    registry, reader, _, _, _ = setup
    payments = registry.get_or_create("payments", CircuitBreakerConfig(failure_threshold=3))
    registry.get_or_create("search")  # created, never called
    for _ in range(7):
        payments.call(lambda: "ok")
    for _ in range(3):
        with contextlib.suppress(Down):
            payments.call(fail)
    for _ in range(2):
        assert payments.call(lambda: "ok", lambda: "fallback") == "fallback"  # rejected

    found = points(reader)
    calls = "circuit_breaker.calls"
    assert (
        value(found, calls, **{"circuit_breaker.name": "payments", "outcome": "success"}).value == 7
    )
    assert (
        value(found, calls, **{"circuit_breaker.name": "payments", "outcome": "failure"}).value == 3
    )
    assert (
        value(found, calls, **{"circuit_breaker.name": "search", "outcome": "success"}).value == 0
    )
    rejected = value(
        found, "circuit_breaker.rejected_calls", **{"circuit_breaker.name": "payments"}
    )
    assert rejected.value == 2
    fallbacks = value(found, "circuit_breaker.fallbacks", **{"circuit_breaker.name": "payments"})
    assert fallbacks.value == 2
    states = {
        p.attributes["circuit_breaker.state"]: p.value
        for p in found["circuit_breaker.state"]
        if p.attributes["circuit_breaker.name"] == "payments"
    }
    assert states["open"] == 1 and sum(states.values()) == 1 and len(states) == 5
    ok = value(
        found,
        "circuit_breaker.call.duration",
        **{"circuit_breaker.name": "payments", "outcome": "success"},
    )
    failed = value(
        found,
        "circuit_breaker.call.duration",
        **{"circuit_breaker.name": "payments", "outcome": "failure"},
    )
    assert (ok.count, failed.count) == (7, 3) and ok.sum >= 0  # every call that ran


def test_a_state_change_is_an_event_on_the_current_span(setup: Any) -> None:
    registry, _, spans, tracer, _ = setup
    payments = registry.get_or_create("payments", CircuitBreakerConfig(failure_threshold=2))
    with tracer.start_as_current_span("checkout"):
        for _ in range(2):
            with contextlib.suppress(Down):
                payments.call(fail)
    with tracer.start_as_current_span("operator"):
        payments.force_closed("drill")
    [checkout, operator] = spans.get_finished_spans()
    [opened] = checkout.events
    assert opened.name == "circuit_breaker.state_change"
    assert dict(opened.attributes) == {
        "circuit_breaker.name": "payments",
        "circuit_breaker.from_state": "closed",
        "circuit_breaker.to_state": "open",
        "circuit_breaker.reason": "failure_threshold",
        "circuit_breaker.failure_rate": 1.0,
    }
    [forced] = operator.events
    assert forced.attributes["circuit_breaker.to_state"] == "forced_closed"


def test_without_latency_no_call_listener_slows_the_calls(setup: Any) -> None:
    registry = CircuitBreakerRegistry()
    reader = InMemoryMetricReader()
    instrumentation = instrument(
        registry, meter_provider=MeterProvider(metric_readers=[reader]), latency=False
    )
    breaker = registry.get_or_create("b")
    breaker.call(lambda: 1)
    assert breaker._fast  # the closed fast path stays on
    assert "circuit_breaker.call.duration" not in points(reader)
    assert value(points(reader), "circuit_breaker.calls", outcome="success").value == 1
    instrumentation.uninstrument()
