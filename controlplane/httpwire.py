"""The HTTP protocol ``controlplane.serve`` runs: uvicorn's (httptools), with a
response's head and body sent together.

uvicorn writes a response's status line and headers when the application starts the
response, and the body when it sends it: two system calls and, with ``TCP_NODELAY``,
two TCP segments, for every sync answer and every watch answer. The agent, which reads
the head and then the body, wakes up twice. Here a write is held until the next write
on the connection, which sends both at once, or until the end of the event loop's turn
(``call_soon``), whichever comes first: an answer's head and body go in one write, the
moment the body is written (a thousand watch answers woken together each leave as
soon as they are written, not after the last one). A close, an EOF or a switch to
another protocol (a WebSocket upgrade) sends what is held first; an abort drops it, as
the transport would. Flow control is the transport's own (its buffer size counts what
is held).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class JoinedWrites:
    """A transport that holds a write until the next one or the end of the event loop's
    turn and sends them in one write of the transport it wraps; everything else is that
    transport's."""

    __slots__ = ("_loop", "_pending", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending:
            # The write after a held one (a body after its head): both leave now, so
            # an answer is not held back while the loop serves other connections.
            self._pending = []
            pending.append(bytes(data))
            if not self.transport.is_closing():
                self.transport.write(b"".join(pending))
            return
        self._pending = [bytes(data)]
        self._loop.call_soon(self.flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is pending now."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self.transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self.transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over :class:`JoinedWrites`; a WebSocket upgrade is
    handed the connection's own transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWrites(transport, self.loop))  # type: ignore[arg-type]

    def handle_websocket_upgrade(self) -> None:
        joined = self.transport
        if isinstance(joined, JoinedWrites):
            joined.flush()
            self.transport = joined.transport
        super().handle_websocket_upgrade()
