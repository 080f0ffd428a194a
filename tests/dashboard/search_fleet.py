"""The names the search tests look for, and the order each query must answer in, shared
by the PostgreSQL tests (test_dash_search.py) and the SQLite check (sqlite_search_check.py)."""

from __future__ import annotations

FLEET: dict[str, list[str]] = {
    "checkout": ["payments", "db", "inventory", "db_main"],
    "checkout-eu": ["payments"],
    "billing": ["payments-retry", "ledger", "repay"],
    "payments-gw": ["upstream"],
}

# Query -> labels in order ("service:" marks a service result).
EXPECTED: dict[str, list[str]] = {
    # Exact names first (both services' "payments"), then the service that starts with
    # it, then a circuit that starts with it, then a circuit of that service.
    "payments": [
        "checkout/payments",
        "checkout-eu/payments",
        "service:payments-gw",
        "billing/payments-retry",
        "payments-gw/upstream",
    ],
    # The service itself, its circuits (exact by service), the service that starts with
    # it, that service's circuit.
    "checkout": [
        "service:checkout",
        "checkout/db",
        "checkout/db_main",
        "checkout/inventory",
        "checkout/payments",
        "service:checkout-eu",
        "checkout-eu/payments",
    ],
    "PAY": [
        "service:payments-gw",
        "billing/payments-retry",
        "checkout/payments",
        "checkout-eu/payments",
        "payments-gw/upstream",
        "billing/repay",
    ],
    "checkout/pay": ["checkout/payments"],
    "CHECKOUT/PAYMENTS": ["checkout/payments"],
    "t/p": ["checkout/payments"],  # across the separator: contains
    "_": ["checkout/db_main"],  # a literal underscore, not LIKE's wildcard
    "%": [],  # not a name character: no query at all
    "pay ments": [],
    "zzz": [],
    "": [],
}


def seed() -> None:
    from controlplane.circuits.models import Circuit, Service

    for service, names in FLEET.items():
        svc = Service.objects.create(name=service)
        Circuit.objects.bulk_create(Circuit(service=svc, name=name) for name in names)


def labels(results: list) -> list[str]:  # type: ignore[type-arg]
    return [r.label if r.kind == "circuit" else f"service:{r.label}" for r in results]
