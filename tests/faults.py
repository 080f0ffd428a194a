"""Dependency faults for tests, made with real sockets on 127.0.0.1.

``TcpProxy(upstream_port)`` forwards ``127.0.0.1:proxy.port`` to
``127.0.0.1:upstream_port`` (PostgreSQL, Redis, ...). Point the process under test at
``proxy.port`` and break the dependency for it alone (other clients of the upstream,
other databases on the server, are untouched):

* ``proxy.cut()``: close every connection and refuse new ones (the dependency is gone:
  connects fail at once with "connection refused");
* ``proxy.hang()``: forward nothing more, either way: open connections go silent (held
  open), new ones are accepted and silent (the dependency answers no more: only
  timeouts end a wait);
* ``proxy.restore()``: close the silent connections and forward new ones again.

``proxy.mode`` is "forward", "cut" or "hung"; ``proxy.connections`` counts accepted
connections. Use it as a context manager, or call ``close()``.

``HungServer()`` is a server that accepts connections and never answers (a hung Redis:
``redis://127.0.0.1:{server.port}``); ``closed_port()`` is a port nothing listens on
(a Redis or database that is gone).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Any

__all__ = ["HungServer", "TcpProxy", "closed_port"]


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connects are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Listener:
    """A listening socket on 127.0.0.1 and its accept thread."""

    def __init__(self, port: int = 0) -> None:
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.port = port
        self.connections = 0

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.settimeout(0.05)
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept_loop, args=(sock,), daemon=True)
        self._thread.start()

    def _unlisten(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _accept_loop(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            client.setblocking(True)
            with self._lock:
                self._open.add(client)
            self._accepted(client)

    def _accepted(self, client: socket.socket) -> None:
        """Hold the connection open, say nothing (overridden to forward)."""

    def _close_all(self) -> None:
        with self._lock:
            socks, self._open = self._open, set()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._unlisten()
        self._close_all()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HungServer(_Listener):
    """Accepts connections on 127.0.0.1 and never answers (nor closes them)."""

    def __init__(self) -> None:
        super().__init__()
        self._listen()

    @property
    def url(self) -> str:
        """A Redis URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"


class TcpProxy(_Listener):
    """A TCP proxy 127.0.0.1:port -> 127.0.0.1:upstream that can cut, hang and restore."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        super().__init__()
        self.upstream = (upstream_host, upstream_port)
        self.mode = "forward"
        self._listen()

    def cut(self) -> None:
        """Close every connection and refuse new ones."""
        self.mode = "cut"
        self._unlisten()
        self._close_all()

    def hang(self) -> None:
        """Forward nothing: open connections go silent, new ones are accepted, silent."""
        self.mode = "hung"
        if self._sock is None:
            self._listen()

    def restore(self) -> None:
        """Close the silent connections; forward new connections again."""
        if self.mode == "hung":
            self._close_all()
        self.mode = "forward"
        if self._sock is None:
            self._listen()

    def _accepted(self, client: socket.socket) -> None:
        if self.mode != "forward":
            return  # hung: held open, silent
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            self._discard(client)
            return
        with self._lock:
            self._open.add(upstream)
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        silent = False
        try:
            a.setblocking(False)
            b.setblocking(False)
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while True:
                if self.mode == "hung":
                    silent = True  # held open, forwarding nothing (closed by restore)
                    return
                if self.mode != "forward":
                    return
                for key, _ in selector.select(timeout=0.05):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.setblocking(True)
                    key.data.sendall(data)
                    key.data.setblocking(False)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            if not silent:
                self._discard(a)
                self._discard(b)
