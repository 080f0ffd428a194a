"""The base of channel transports: ``notify()`` raises TransportError on failure."""

from typing import Any, ClassVar


class TransportError(Exception):
    """A failed delivery; ``permanent`` ones (a 4xx, a bad address) are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport:
    """Delivers notifications to one channel; subclasses set ``kind`` and ``secret_keys``."""

    kind: ClassVar[str]
    # Config keys holding secrets: never logged, never returned in full by the API.
    secret_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    @classmethod
    def config_errors(cls, config: Any) -> dict[str, str]:
        """Reasons per config key; empty when ``config`` is valid."""
        raise NotImplementedError

    @classmethod
    def redact(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The config with its secrets masked, fit to show anyone."""
        return {k: ("********" if k in cls.secret_keys and v else v) for k, v in config.items()}

    def notify(self, payload: dict[str, Any]) -> str:
        """Deliver ``payload`` (the webhook body: event and alert) and say what the far
        side answered ("HTTP 204 from the webhook"); raise TransportError."""
        raise NotImplementedError


def unknown_keys(config: dict[str, Any], known: tuple[str, ...]) -> dict[str, str]:
    """An error for every key not in ``known``."""
    return {k: f"unknown key; allowed: {', '.join(known)}" for k in config if k not in known}
