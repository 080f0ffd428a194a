"""The JSON body of every agent-facing error (sync and watch)."""

from typing import Any


def error_body(errors: dict[str, str]) -> dict[str, Any]:
    """``{"detail", "field", "reason", "errors"}``: the first field leads, all are listed."""
    field, reason = next(iter(errors.items()))
    return {"detail": f"{field}: {reason}", "field": field, "reason": reason, "errors": errors}
