"""Email through Django's mail backends (EMAIL_* settings)."""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email

from controlplane.alerts.transports.base import Transport, TransportError, unknown_keys


def subject_and_text(payload: dict[str, Any]) -> tuple[str, str]:
    """A one-line subject and a plain-text body for a notification."""
    alert = payload["alert"]
    word = str(payload["event"]).upper()  # FIRING, RESOLVED or TEST
    forced = " (forced open)" if alert.get("labels", {}).get("forced") else ""
    subject = f"[{word}] {alert['rule']}: {alert['service']}/{alert['circuit']}{forced}"
    lines = [f"{key}: {value}" for key, value in alert.items() if value not in (None, "", {})]
    return subject, "\n".join(lines) + "\n"


class EmailTransport(Transport):
    """Sends a plain-text message to every address in ``to``."""

    kind = "email"

    @classmethod
    def config_errors(cls, config: Any) -> dict[str, str]:
        if not isinstance(config, dict):
            return {"config": "must be an object"}
        errors = unknown_keys(config, ("to",))
        to = config.get("to")
        if not isinstance(to, list) or not to or len(to) > 50:
            errors["to"] = "must be a list of 1 to 50 email addresses"
            return errors
        for address in to:
            try:
                validate_email(address)
            except (ValidationError, TypeError):
                errors["to"] = f"{address!r} is not an email address"
                break
        return errors

    def notify(self, payload: dict[str, Any]) -> str:
        subject, text = subject_and_text(payload)
        to = self.config["to"]
        try:
            send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, to)
        except (OSError, ValueError) as exc:
            raise TransportError(f"mail not sent: {type(exc).__name__}") from None
        return f"mail handed to the mail server for {len(to)} address{'es' if len(to) > 1 else ''}"
