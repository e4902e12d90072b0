"""`cxrun serve` in a subprocess for the API tests: started on a free port (read from its stderr),
driven with httpx clients that keep every answer, stopped with SIGTERM; keys made with the
installed `cxrun`, as an operator makes them.

    with serving(root) as served:                    # or a module-scoped fixture around it
        ci = served.client(make_key(root, "ci", "read"))
        job = follow(ci, 1)                          # GET /jobs/1 until it is finished
    # here: it exited 0, its stderr has no traceback and no answer was a 5xx
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from conftest import EXECUTABLE

from cxrun.base.enums import JobStatus

SERVING = re.compile(r"serving http://127\.0\.0\.1:(\d+)/api/v1 \(")
START_S = 30.0  # how long `cxrun serve` may take to say where it listens
STOP_S = 60.0  # how long it may take to hand its jobs back and exit after SIGTERM
T = TypeVar("T")


def environment() -> dict[str, str]:
    """This machine's environment without a project or a provider key: the project folder and
    its secrets say everything."""
    return {k: v for k, v in os.environ.items() if k not in {"CXRUN_PROJECT", "LLM_KEY"}}


def command(root: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed `cxrun`, run to its end in `root`."""
    return subprocess.run(
        [str(EXECUTABLE), *args],
        cwd=root,
        env=environment(),
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_keys(root: Path, wanted: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """`cxrun keys create NAME --scope S ... --json` for each name and scopes of `wanted`, all
    started at once; the keys they print (once), by name. `spinner:NAME` stands for
    `--spinner NAME`."""
    running = {
        name: subprocess.Popen(
            [str(EXECUTABLE), "keys", "create", name, *map(_option, scopes), "--json"],
            cwd=root,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, scopes in wanted.items()
    }
    made = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        made[name] = str(json.loads(out)["key"])
    return made


def make_key(root: Path, name: str, *scopes: str) -> str:
    return make_keys(root, {name: scopes})[name]


def _option(scope: str) -> str:
    kind, _, spinner = scope.partition(":")
    return f"--spinner={spinner}" if kind == "spinner" else f"--scope={scope}"


def poll(
    fetch: Callable[[], T], accept: Callable[[T], bool], seconds: float = 30.0, every: float = 0.25
) -> T:
    """`fetch()` again and again until `accept` takes what it returns; AssertionError past the
    deadline, naming what it last saw. Every quarter of a second by default: a request to the
    API costs the server a few state reads, which its runtime would rather have."""
    deadline = time.monotonic() + seconds
    while True:
        found = fetch()
        if accept(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not there after {seconds} s; last seen: {found!r}")
        time.sleep(every)


def answer(response: httpx.Response, status: int) -> Any:
    """The JSON of an answer that must have `status`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json", response.headers
    return response.json()


def follow(client: httpx.Client, job: int, seconds: float = 60.0) -> dict[str, Any]:
    """GET /jobs/{job} until the job is finished, as a CI script waits for it; its last detail."""
    found: dict[str, Any] = poll(
        lambda: answer(client.get(f"/jobs/{job}"), 200),
        lambda detail: JobStatus(detail["status"]).finished,
        seconds,
    )
    return found


def jobs(client: httpx.Client) -> list[dict[str, Any]]:
    """Every job, as GET /jobs lists them (newest first)."""
    listed: list[dict[str, Any]] = answer(client.get("/jobs", params={"limit": 1000}), 200)
    return listed


class Served:
    """One `cxrun serve --port 0 --project ROOT` process. Every answer its clients received is
    kept in `answers`; its stderr is read as it comes (so the pipe never fills up)."""

    def __init__(self, root: Path, *options: str) -> None:
        self.root = root
        self.answers: list[httpx.Response] = []
        self._clients: list[httpx.Client] = []
        self._lines: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [str(EXECUTABLE), "serve", "--port", "0", "--project", str(root), *options],
            cwd=root,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = self._wait_for_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.origin}/api/v1"

    @property
    def stderr(self) -> str:
        return "".join(self._lines)

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        """An httpx client of the API, sending `key` as its bearer token."""
        headers = {"authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=30,
            event_hooks={"response": [self._keep]},
            **options,
        )
        self._clients.append(client)
        return client

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code once it has exited."""
        for client in self._clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"cxrun serve ignored SIGTERM for {STOP_S} s:\n{self.stderr}"
            ) from None
        self._reader.join(5)
        return code

    def stop_cleanly(self) -> None:
        """Stop it; it must exit 0, with no traceback on stderr and no 5xx answer given."""
        code = self.stop()
        assert code == 0, f"cxrun serve exited {code}:\n{self.stderr}"
        assert "Traceback" not in self.stderr, self.stderr
        failed = [
            (r.request.method, str(r.request.url), r.status_code, r.text)
            for r in self.answers
            if r.status_code >= 500
        ]
        assert failed == [], failed

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.answers.append(response)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.append(line)
            if SERVING.search(line):
                self._ready.set()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_S
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"cxrun serve did not start:\n{self.stderr}")
        found = SERVING.search(self.stderr)
        assert found is not None
        return int(found.group(1))


@contextmanager
def serving(root: Path, *options: str) -> Iterator[Served]:
    """A server for the block; stopped cleanly after it (see Served.stop_cleanly)."""
    served = Served(root, *options)
    try:
        yield served
    except BaseException:
        served.stop()
        raise
    served.stop_cleanly()
