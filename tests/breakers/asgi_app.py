"""ASGI applications for tests/e2e/test_framework_integrations_e2e.py, served by uvicorn:
one that speaks the lifespan protocol and one that raises on it (as Django's ASGI
handler does), each wrapped in breakers.integrations.asgi.SwitchyardMiddleware. GET
/work calls through the default registry's breaker "inventory"; /fail fails through it."""

from __future__ import annotations

from typing import Any

from breakers import circuit_registry
from breakers.integrations.asgi import SwitchyardMiddleware

inventory = circuit_registry.get_or_create("inventory")


class Down(Exception):
    pass


def fail() -> str:
    raise Down


async def respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def inner(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    try:
        text = inventory.call(fail if scope["path"] == "/fail" else (lambda: "in stock"))
        await respond(send, 200, text.encode())
    except Exception as exc:
        await respond(send, 503, type(exc).__name__.encode())


async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise ValueError("this application only handles HTTP")
    await inner(scope, receive, send)


app = SwitchyardMiddleware(inner)
app_without_lifespan = SwitchyardMiddleware(no_lifespan)
