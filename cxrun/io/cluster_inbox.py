"""Where a job run's results come back from the workers of a Dask cluster (cxrun/io/cluster.py).

A runtime's job run listens on a port of its own; a worker connects, says the run's token
(nothing it sends is unpickled before), then sends frames of finished calls, each a pickled
list of (batch, result); the runtime answers a frame once every call in it is kept."""

from __future__ import annotations

import asyncio
import hmac
import pickle
import secrets
import ssl
from collections.abc import Awaitable
from typing import Any, Protocol

from cxrun.io.cluster_worker import ACK, MAX_FRAME, frame_length

HELLO_WITHIN = 10.0  # seconds a worker's connection has to say the token
LOST_WORKER_WAIT = 10.0  # seconds for a lost worker's connection to end before its calls go again


class Taker(Protocol):
    """A batch waiting for its results."""

    def kept(self, results: list[dict[str, Any]]) -> Awaitable[bool]:
        """Keep them; False when keeping failed (the batch ends with that error)."""
        ...


class Inbox:
    """Where a job run's results come back: a listening socket of its own. A worker connects,
    sends the token (nothing is unpickled before it), then frames of finished calls, each
    answered once every call in it is kept, so that a worker frees a call's slot only once the
    runtime has its result."""

    def __init__(self, address: tuple[str, int], token: str) -> None:
        self.address, self.token = address, token
        self.batches: dict[str, Taker] = {}
        self.server: asyncio.Server | None = None
        self.open: dict[str, set[asyncio.Task[None]]] = {}  # worker -> its connections' tasks
        self.writers: set[asyncio.StreamWriter] = set()

    @classmethod
    async def start(cls, host: str, context: ssl.SSLContext | None) -> Inbox:
        """Listen on `host` (a free port), with TLS when `context` is given."""
        inbox = cls((host, 0), secrets.token_hex(16))
        inbox.server = await asyncio.start_server(
            inbox._serve, host, 0, ssl=context, limit=MAX_FRAME
        )
        inbox.address = (host, int(inbox.server.sockets[0].getsockname()[1]))
        return inbox

    async def ended(self, workers: set[str]) -> None:
        """Wait (a while) for the connections of these lost workers to end: what they sent
        before they went is kept before their calls are made again."""
        tasks = [task for worker in workers for task in self.open.get(worker, ())]
        if tasks:
            await asyncio.wait(tasks, timeout=LOST_WORKER_WAIT)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.close()  # its reader ends: the connection's task returns
        tasks = [task for tasks in self.open.values() for task in tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        worker = ""
        self.writers.add(writer)
        try:
            async with asyncio.timeout(HELLO_WITHIN):
                hello = await reader.readexactly(frame_length(await reader.readexactly(4)))
            token, _, worker = hello.decode("utf-8", "replace").partition(" ")
            if not hmac.compare_digest(token, self.token):
                return
            self.open.setdefault(worker, set()).add(task)
            while True:
                size = frame_length(await reader.readexactly(4))
                payload = await reader.readexactly(size)
                # unpickled only from a connection that said this run's token
                chunk: list[tuple[str, dict[str, Any]]] = pickle.loads(payload)  # noqa: S301
                for name, results in _by_batch(chunk).items():
                    batch = self.batches.get(name)
                    if batch is not None and not await batch.kept(results):
                        return  # not answered: the batch ends with what keeping them raised
                writer.write(ACK)
        except (
            OSError,
            EOFError,
            ValueError,
            TimeoutError,
            asyncio.IncompleteReadError,
            pickle.UnpicklingError,
        ):
            pass  # the worker went (its calls not answered are made again) or never spoke
        finally:
            self.open.get(worker, set()).discard(task)
            self.writers.discard(writer)
            writer.close()


def _by_batch(chunk: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for name, result in chunk:
        found.setdefault(name, []).append(result)
    return found
