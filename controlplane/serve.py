"""``python -m controlplane.serve``: the web service, uvicorn workers that share the load.

``uvicorn --workers N`` binds one listening socket in its parent and hands it to every
worker: one accept queue, and whichever worker wakes first takes every connection
waiting in it. Agents keep their connections open (keep-alive) and connect in bursts
(a fleet starting, or coming back after a deploy), so one worker ends up serving most
of the fleet while the others idle. Here each worker binds its own socket to the same
address with ``SO_REUSEPORT`` (Linux), and the kernel spreads new connections over the
workers by a hash of their addresses.

The parent binds the address once, without ``SO_REUSEPORT``, before it starts any
worker: an address another server holds is refused at start-up ("address already in
use") instead of being shared with it. It restarts a worker that dies, and stops
every worker on SIGTERM or SIGINT (each finishes its requests: uvicorn's graceful
shutdown). A worker that cannot start (uvicorn's exit status 3) stops the service.

Options are uvicorn's, for the ones this service uses (see ``--help``); one worker
runs in this process, as plain uvicorn would. The workers speak uvicorn's httptools
protocol with an answer's head and body written together
(:mod:`controlplane.httpwire`).
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.process import BaseProcess
from typing import Any, Literal

APP = "controlplane.asgi:application"
#: Workers at most (a process each).
MAX_WORKERS = 64
#: uvicorn's exit status when a worker could not start (import error, bad settings).
STARTUP_FAILURE = 3
#: Seconds between the parent's checks of its workers.
CHECK_SECONDS = 0.5
#: Seconds a stopping worker has to finish its requests before it is killed.
STOP_SECONDS = 30.0
#: Tracked objects allocated (net of those freed) between two young collections of a
#: worker's cyclic garbage collector (Python's default: 700). See :func:`_run`.
GC_YOUNG_THRESHOLD = 10_000

logger = logging.getLogger("controlplane.serve")


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    workers: int
    proxy_headers: bool
    forwarded_allow_ips: str | None
    access_log: bool
    log_level: str
    timeout_keep_alive: int
    lifespan: Literal["auto", "on", "off"]
    backlog: int
    timeout_graceful_shutdown: int | None


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m controlplane.serve",
        description="The Switchyard web service: uvicorn workers, each with its own "
        "SO_REUSEPORT socket so that the kernel spreads connections over them.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_WORKERS") or 1),
        help=f"worker processes, 1-{MAX_WORKERS} (default: WEB_WORKERS, else 1)",
    )
    parser.add_argument("--proxy-headers", action="store_true")
    parser.add_argument("--forwarded-allow-ips", default=None)
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    parser.add_argument("--timeout-keep-alive", type=int, default=30, help="seconds")
    parser.add_argument("--lifespan", default="off", choices=("auto", "on", "off"))
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument(
        "--timeout-graceful-shutdown",
        type=int,
        default=None,
        help="seconds a stopping worker waits for its requests (default: until they end)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers: must be 1-{MAX_WORKERS}, got {args.workers}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: must be 0-65535, got {args.port}")
    if args.port == 0 and args.workers > 1:
        parser.error("--port: 0 (any free port) needs --workers 1: each worker would get its own")
    if args.timeout_keep_alive < 1:
        parser.error(f"--timeout-keep-alive: must be at least 1, got {args.timeout_keep_alive}")
    if args.backlog < 1:
        parser.error(f"--backlog: must be at least 1, got {args.backlog}")
    if args.timeout_graceful_shutdown is not None and args.timeout_graceful_shutdown < 0:
        parser.error(
            f"--timeout-graceful-shutdown: must be at least 0, got {args.timeout_graceful_shutdown}"
        )
    return Options(**vars(args))


def _address(options: Options) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    family, _, _, _, address = socket.getaddrinfo(
        options.host, options.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    return family, address


def listening_socket(options: Options, *, shared: bool) -> socket.socket:
    """A TCP socket listening on the options' address; ``shared``: in the address's
    ``SO_REUSEPORT`` group (one per worker). Created with ``IPPROTO_TCP`` so that the
    accepted connections get ``TCP_NODELAY``."""
    family, address = _address(options)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(options.backlog)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def _config(options: Options) -> Any:
    import uvicorn

    from controlplane.httpwire import HttpProtocol

    return uvicorn.Config(
        APP,
        http=HttpProtocol,
        host=options.host,
        port=options.port,
        proxy_headers=options.proxy_headers,
        forwarded_allow_ips=options.forwarded_allow_ips,
        access_log=options.access_log,
        log_level=options.log_level,
        timeout_keep_alive=options.timeout_keep_alive,
        lifespan=options.lifespan,
        backlog=options.backlog,
        timeout_graceful_shutdown=options.timeout_graceful_shutdown,
    )


def _server(options: Options) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that, when it stops, ends the agents' held watches with a 204
        once it no longer accepts connections and has asked the open ones to close:
        each agent watches again at once (on another worker, or on the next server once
        it is up) instead of holding this one to the end of its graceful shutdown and
        being cancelled there."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            from controlplane.circuits.watchhub import get_hub

            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            for connection in list(self.server_state.connections):
                connection.shutdown()  # no keep-alive: each closes after its answer
            released = get_hub().release()
            if released:
                logger.info("stopping: %d held watches answered", released)
            await super().shutdown(sockets)

    return Server(_config(options))


def _run(options: Options, sock: socket.socket) -> None:
    """Load the application, settle the garbage collector, serve on ``sock`` until
    stopped.

    A worker serving thousands of agents holds each one's kept-alive connection (some
    thirty objects) and the requests in flight. With Python's defaults, the objects of
    requests in flight outlive two young collections (one every 700 allocations, and a
    request makes hundreds), reach the oldest generation, and trigger a full collection
    every few seconds. A full collection walks everything the worker holds with the
    GIL held: at 5,000 agents over two workers, 75-230 ms in which no request was
    answered, every 2-5 s (docs/sync-protocol.md). So:

    * what loading the application created (modules, settings, URL patterns: about
      125,000 objects) lives as long as the worker and is moved out of every collection
      (``gc.freeze``);
    * a young collection runs every :data:`GC_YOUNG_THRESHOLD` allocations, so that
      requests end before their objects are promoted.

    The sync's structs and the store's cache of rows are not tracked at all
    (:mod:`controlplane.circuits.sync.wire`, :class:`~controlplane.circuits.sync.store.Row`).
    """
    server = _server(options)
    server.config.load()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    server.run(sockets=[sock])


def serve_worker(values: dict[str, Any]) -> None:
    """One worker: its own socket in the address's group, then uvicorn until it stops."""
    options = Options(**values)
    _run(options, listening_socket(options, shared=True))


class Supervisor:
    """Starts ``options.workers`` workers, restarts one that dies, stops them all."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[BaseProcess] = []
        self.stopping = False

    def start_worker(self) -> BaseProcess:
        process = self.context.Process(
            target=serve_worker, args=(asdict(self.options),), name="switchyard-web"
        )
        process.start()
        return process

    def stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        self.workers = [self.start_worker() for _ in range(self.options.workers)]
        logger.info(
            "serving on %s:%d with %d workers (SO_REUSEPORT): %s",
            self.options.host,
            self.options.port,
            len(self.workers),
            ", ".join(str(w.pid) for w in self.workers),
        )
        status = 0
        while not self.stopping:
            time.sleep(CHECK_SECONDS)
            for index, worker in enumerate(self.workers):
                if worker.is_alive() or self.stopping:
                    continue
                if worker.exitcode == STARTUP_FAILURE:
                    logger.error("worker %s could not start: stopping the service", worker.pid)
                    self.stopping, status = True, STARTUP_FAILURE
                    break
                replacement = self.start_worker()
                logger.warning(
                    "worker %s exited (status %s): started worker %s",
                    worker.pid,
                    worker.exitcode,
                    replacement.pid,
                )
                self.workers[index] = replacement
        self.stop_all()
        return status

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                logger.warning("worker %s did not stop in %.0f s: killed", worker.pid, STOP_SECONDS)
                worker.kill()
                worker.join()


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=options.log_level.upper(), format="%(levelname)s:     %(message)s")
    try:
        # Fails at once (address in use, no such host) rather than in every worker; not
        # in the SO_REUSEPORT group, so an address held by another server is not shared.
        # One worker serves on it as it is: nothing else can join a socket without
        # SO_REUSEPORT.
        probe = listening_socket(options, shared=False)
    except OSError as exc:
        print(f"cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    if options.workers == 1:
        _run(options, probe)
        return 0
    probe.close()
    if not hasattr(socket, "SO_REUSEPORT"):
        print("--workers above 1 needs SO_REUSEPORT (Linux)", file=sys.stderr)
        return 1
    return Supervisor(options).run()


if __name__ == "__main__":
    sys.exit(main())
