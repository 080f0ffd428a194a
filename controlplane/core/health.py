"""Liveness for load balancers: the process answers and its database does."""

from django.db import connection
from django.http import HttpRequest, JsonResponse

from controlplane.core.errors import error_response


def healthz(request: HttpRequest) -> JsonResponse:
    """GET /healthz: ``{"status": "ok", "database": "ok"}``, 503 if the database fails."""
    if request.method not in ("GET", "HEAD"):
        response = error_response(405, {"detail": f'Method "{request.method}" not allowed.'})
        response["Allow"] = "GET, HEAD"
        return response
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any database failure means not ready
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})
