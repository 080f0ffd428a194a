"""The demo notification channel: a local webhook receiver a person can watch.

``python -m controlplane.demo.receiver --port 8001`` (the channel's HMAC secret in
SWITCHYARD_DEMO_WEBHOOK_SECRET, never on the command line) accepts Switchyard's
signed webhook POSTs on ``/hook``, prints each one to the console, and lists the last
ones at ``/`` (a plain page; it reloads itself every 5 s). Requests with a bad
signature are refused with 401.
"""

import argparse
import hashlib
import hmac
import html
import json
import os
import signal
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

SIGNATURE_HEADER = "X-Switchyard-Signature"
SECRET_VARIABLE = "SWITCHYARD_DEMO_WEBHOOK_SECRET"
MAX_BODY = 64 * 1024
KEEP = 200


class Inbox:
    """The last notifications received, newest first."""

    def __init__(self) -> None:
        self.items: deque[tuple[str, dict[str, Any]]] = deque(maxlen=KEEP)
        self.lock = threading.Lock()

    def add(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.items.appendleft((datetime.now(UTC).strftime("%H:%M:%S"), body))

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.items)


def summary(body: dict[str, Any]) -> str:
    """One line about a notification: event, severity, rule, service/circuit."""
    alert = body.get("alert") or {}
    return (
        f"{str(body.get('event', '?')).upper()} [{alert.get('severity', '?')}] "
        f"{alert.get('rule', '?')}: {alert.get('service', '?')}/{alert.get('circuit', '?')}"
    )


def page(inbox: Inbox) -> bytes:
    rows = "".join(
        f"<tr><td>{html.escape(at)}</td><td>{html.escape(summary(body))}</td></tr>"
        for at, body in inbox.snapshot()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' "
        "content='5'><title>Switchyard demo notifications</title></head><body>"
        "<h1>Notifications received by the demo webhook</h1>"
        f"<table>{rows or '<tr><td>none yet</td></tr>'}</table></body></html>"
    ).encode()


def make_handler(inbox: Inbox, secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/json":
                self._send(200, "application/json", json.dumps(inbox.snapshot()).encode())
            elif self.path == "/":
                self._send(200, "text/html; charset=utf-8", page(inbox))
            else:
                self._send(404, "text/plain", b"not found\n")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/hook" or not 0 < length <= MAX_BODY:
                self._send(400, "text/plain", b"POST a JSON body to /hook\n")
                return
            raw = self.rfile.read(length)
            expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get(SIGNATURE_HEADER, "")):
                self._send(401, "text/plain", b"bad signature\n")
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, "text/plain", b"body is not JSON\n")
                return
            inbox.add(body)
            print(f"demo webhook: {summary(body)}", flush=True)
            self._send(204, "text/plain", b"")

        def _send(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per notification is printed above; access logs are noise

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_VARIABLE, "")
    if len(secret) < 16:
        parser.error(f"{SECRET_VARIABLE} must hold the channel's secret (16+ characters)")
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Inbox(), secret))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
