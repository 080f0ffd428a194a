"""Apprise URLs: Slack, Teams, PagerDuty, Telegram and the rest of the long tail."""

from typing import Any

from controlplane.alerts.transports.base import Transport, TransportError, unknown_keys
from controlplane.alerts.transports.email import subject_and_text


class AppriseTransport(Transport):
    """Notifies every Apprise URL in ``urls`` (each URL carries its service's secret)."""

    kind = "apprise"
    secret_keys = ("urls",)

    @classmethod
    def config_errors(cls, config: Any) -> dict[str, str]:
        import apprise

        if not isinstance(config, dict):
            return {"config": "must be an object"}
        errors = unknown_keys(config, ("urls",))
        urls = config.get("urls")
        if not isinstance(urls, list) or not urls or len(urls) > 20:
            errors["urls"] = "must be a list of 1 to 20 Apprise URLs"
            return errors
        for index, url in enumerate(urls):
            if not isinstance(url, str) or not apprise.Apprise().add(url):
                errors["urls"] = f"item {index} is not a URL Apprise supports"
                break
        return errors

    @classmethod
    def redact(cls, config: dict[str, Any]) -> dict[str, Any]:
        urls = config.get("urls") or []
        return {"urls": [f"{str(u).split('://', 1)[0]}://********" for u in urls]}

    def notify(self, payload: dict[str, Any]) -> str:
        import apprise

        notifier = apprise.Apprise()
        for url in self.config["urls"]:
            notifier.add(url)
        title, body = subject_and_text(payload)
        # Apprise reports failure as False and logs details without the URLs' tokens.
        if not notifier.notify(title=title, body=body):
            raise TransportError("an Apprise service did not accept the notification")
        count = len(self.config["urls"])
        return f"accepted by {count} Apprise service{'s' if count > 1 else ''}"
