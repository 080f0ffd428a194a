"""Re-export of the project's error body (its home is controlplane.core.errors)."""

from controlplane.core.errors import error_body as error_body
