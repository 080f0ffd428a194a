"""Webhook: a JSON POST signed with HMAC-SHA256 of the raw body.

Header ``X-Switchyard-Signature: sha256=<hex>``; 4xx answers are permanent failures
(except 408 and 429), 5xx answers, timeouts and connection errors are retried.
"""

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from controlplane.alerts.transports.base import Transport, TransportError, unknown_keys

SIGNATURE_HEADER = "X-Switchyard-Signature"
# The notification's id, the same on every attempt (also in the signed body).
DELIVERY_HEADER = "X-Switchyard-Delivery"
RETRYABLE_4XX = {408, 425, 429}


def sign(body: bytes, secret: str) -> str:
    """The signature header value of ``body``: "sha256=" and the hex HMAC-SHA256."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookTransport(Transport):
    """POSTs the notification as JSON to ``url``, signed with ``secret``."""

    kind = "webhook"
    secret_keys = ("secret",)

    @classmethod
    def config_errors(cls, config: Any) -> dict[str, str]:
        if not isinstance(config, dict):
            return {"config": "must be an object"}
        errors = unknown_keys(config, ("url", "secret", "timeout"))
        url = config.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            errors["url"] = "must be an http:// or https:// URL"
        secret = config.get("secret")
        if not isinstance(secret, str) or len(secret) < 16:
            errors["secret"] = "must be a string of at least 16 characters"
        timeout = config.get("timeout", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            errors["timeout"] = "must be a number of seconds"
        elif not 1 <= timeout <= 60:
            errors["timeout"] = "must be between 1 and 60 seconds"
        return errors

    @classmethod
    def redact(cls, config: dict[str, Any]) -> dict[str, Any]:
        # URLs often carry tokens (Slack-style hooks): keep the scheme and host only.
        shown = super().redact(config)
        parts = urlsplit(str(config.get("url", "")))
        shown["url"] = f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else ""
        return shown

    def notify(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        request = urllib.request.Request(
            self.config["url"],
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Switchyard-Alerts/1",
                SIGNATURE_HEADER: sign(body, self.config["secret"]),
                **(
                    {DELIVERY_HEADER: str(payload["delivery_id"])}
                    if "delivery_id" in payload
                    else {}
                ),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.get("timeout", 10)) as answer:
                answer.read(1024)
                return f"HTTP {answer.status} from the webhook"
        except urllib.error.HTTPError as exc:
            permanent = 400 <= exc.code < 500 and exc.code not in RETRYABLE_4XX
            raise TransportError(f"HTTP {exc.code} from the webhook", permanent=permanent) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"webhook unreachable: {reason}") from None
