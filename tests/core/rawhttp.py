"""A request written by hand on a socket, so that a test decides how much of the body is
sent and when: to show that a server answers before the body has arrived."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from pathlib import Path
from typing import Any


def bytes_read(pid: int) -> int:
    """Bytes process ``pid`` has read by read(2)-like calls, sockets included."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        data = response.read()
        self.body: Any = json.loads(data) if data else None


class RawRequest:
    """``method path`` with ``headers``; the body follows by :meth:`send`, raw or as
    chunks (``chunked=True``: ``Transfer-Encoding: chunked``, no Content-Length)."""

    def __init__(
        self,
        port: int,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        chunked: bool = False,
        first: bytes = b"",
        timeout: float = 5.0,
    ) -> None:
        self.chunked = chunked
        self.sent = 0  # body bytes handed to the kernel
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        # The first body bytes go with the headers, in one write: they reach the server
        # with them. (Bytes the server has not read when it closes the connection make
        # the kernel reset it, and a reset can discard the answer before the client
        # reads it; a server that answers without reading is exactly what is tested.)
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + (self._frame(first) if first else b""))
        self.sent = len(first)

    def _frame(self, data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data

    def send(self, data: bytes) -> bool:
        """Send ``data`` as (part of) the body; False once the server stopped taking it
        (connection closed or reset, or nothing more accepted within the timeout)."""
        try:
            self.sock.sendall(self._frame(data))
        except OSError:
            return False
        self.sent += len(data)
        return True

    def answered(self, within: float = 0.0) -> bool:
        """Whether the server has begun to answer (waiting up to ``within`` seconds)."""
        readable, _, _ = select.select([self.sock], [], [], within)
        return bool(readable)

    def answer(self, within: float = 10.0) -> Answer:
        """The server's answer; fails if none begins within ``within`` seconds."""
        assert self.answered(within), f"no answer within {within} s after {self.sent} bytes"
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        return Answer(response)

    def push(self, total: int, chunk: int = 64 * 1024) -> int:
        """Keep sending up to ``total`` more bytes until the server stops taking them;
        returns how many it took."""
        block = b"x" * chunk
        before = self.sent
        deadline = time.monotonic() + 30
        while self.sent - before < total and time.monotonic() < deadline:
            if not self.send(block):
                break
        return self.sent - before

    def close(self) -> None:
        self.sock.close()
