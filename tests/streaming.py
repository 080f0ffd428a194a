"""Reading a streaming response in tests."""

from typing import Any

from asgiref.sync import async_to_sync


def body(response: Any) -> bytes:
    """A streaming response's whole body (its content is an asynchronous iterator)."""

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return bytes(async_to_sync(read)())
