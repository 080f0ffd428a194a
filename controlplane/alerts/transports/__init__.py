"""Channel transports, registered by channel kind (one module each)."""

from typing import Any

from controlplane.alerts.transports.apprise import AppriseTransport
from controlplane.alerts.transports.base import Transport, TransportError
from controlplane.alerts.transports.email import EmailTransport
from controlplane.alerts.transports.webhook import WebhookTransport

TRANSPORTS: dict[str, type[Transport]] = {
    t.kind: t for t in (WebhookTransport, EmailTransport, AppriseTransport)
}

__all__ = ["TRANSPORTS", "Transport", "TransportError", "config_errors", "get_transport"]


def get_transport(kind: str) -> type[Transport]:
    """The transport class of a channel kind; ValueError naming ``kind`` if none."""
    try:
        return TRANSPORTS[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {', '.join(TRANSPORTS)}, got {kind!r}") from None


def config_errors(kind: str, config: Any) -> dict[str, str]:
    """Reasons per config key for a channel of ``kind`` (empty when valid)."""
    if kind not in TRANSPORTS:
        return {"kind": f"must be one of {', '.join(TRANSPORTS)}"}
    return TRANSPORTS[kind].config_errors(config)
