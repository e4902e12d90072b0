"""`cxrun serve`: uvicorn on one listening socket, and the runtime loop beside it in the same
process unless told otherwise; SIGINT or SIGTERM stops both, the runtime handing its jobs back."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cxrun.base.errors import CxrunError

if TYPE_CHECKING:
    from cxrun.ops.alerts import Courier


@dataclass(frozen=True)
class Options:
    host: str = "127.0.0.1"
    port: int = 8750
    runtime: bool = True  # run queued jobs in this process too
    max_jobs: int = 1
    proxies: tuple[str, ...] = ()  # whose X-Forwarded-For names the client


def serve(project_dir: str | None, options: Options, on_event: Callable[[str], None]) -> None:
    """Serve the API until a signal; with `runtime`, run queued jobs meanwhile."""
    import uvicorn

    from cxrun.api.app import build

    proxies = [_proxy(p) for p in options.proxies]
    host, port, runtime, max_jobs = options.host, options.port, options.runtime, options.max_jobs
    app = build(project_dir)
    listening = listen(host, port)
    stop = threading.Event()
    # The client's address (which bad keys are counted by) is the peer's, unless the peer is a
    # proxy the operator named: then the last address its X-Forwarded-For adds.
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
    server = _Server(config)
    failures: list[Exception] = []

    def runtime_failed(exc: Exception) -> None:
        # A server whose runtime is gone would keep the jobs it claimed running for good (their
        # owner, this process, is alive); once it exits, the next runtime takes them over.
        failures.append(exc)
        server.should_exit = True

    # The signals are ours before the runtime starts and the port is announced: a SIGTERM sent
    # as soon as the line is out stops both cleanly instead of killing the process.
    with _signals(server, stop):
        worker = (
            _runtime(project_dir, max_jobs, stop, on_event, runtime_failed) if runtime else None
        )
        courier = None if runtime else _courier(project_dir, on_event)  # a runtime has its own
        bound = listening.getsockname()[1]
        done = "the runtime runs here" if runtime else "start `cxrun runtime` to run jobs"
        console = f"the console at http://{host}:{bound}/"
        on_event(f"serving http://{host}:{bound}/api/v1 ({done}); {console}; Ctrl-C stops it")
        try:
            server.run(sockets=[listening])
        finally:
            stop.set()
            if worker is not None:
                worker.join()
            if courier is not None:
                courier.stop()
    if failures:
        raise failures[0]


def _proxy(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise CxrunError(
            f"--trust-proxy: {text!r} is not an IP address or network",
            "give the proxy's address, e.g. --trust-proxy 10.0.0.5 or --trust-proxy 10.0.0.0/8",
        ) from None


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening, or a clear error (a port in use, say)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CxrunError(
            f"cannot listen on {host}:{port}: {why}", "pick another --port (or --host)"
        ) from None
    sock.set_inheritable(True)
    return sock


def _courier(project_dir: str | None, on_event: Callable[[str], None]) -> Courier:
    """Alerts sent from a thread of their own, when no runtime here sends them."""
    from cxrun.ops import open_context
    from cxrun.ops.alerts import Courier

    return Courier(open_context(project_dir), on_event)


def _runtime(
    project_dir: str | None,
    max_jobs: int,
    stop: threading.Event,
    on_event: Callable[[str], None],
    failed: Callable[[Exception], None],
) -> threading.Thread:
    """The runtime loop on its own thread (it stops, handing its jobs back, when `stop` is set;
    `failed` hears of an error that stopped it, a busy state say)."""
    from cxrun.ops import open_context
    from cxrun.ops.runtime import runtime

    ctx = open_context(project_dir)

    def loop() -> None:
        try:
            runtime(ctx, False, max_jobs, stop, on_event)
        except Exception as exc:
            on_event("runtime stopped by an error: the server stops too")
            failed(exc)

    worker = threading.Thread(target=loop, name="runtime", daemon=True)
    worker.start()
    return worker


@contextmanager
def _signals(server: Any, stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM stop the server and the runtime (a second Ctrl-C forces the exit).
    uvicorn's own handling would raise the signal again once it has stopped, and SIGTERM would
    then end the process mid-hand-back."""

    def handle(number: int, frame: object) -> None:
        if server.should_exit and number == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True
        stop.set()

    numbers = (signal.SIGINT, signal.SIGTERM)
    before = {n: signal.signal(n, handle) for n in numbers}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


class _Server:
    """uvicorn's server, leaving the signals to `_signals`."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)
