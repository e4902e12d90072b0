"""The HTTP API end to end: `cxrun serve` in a subprocess over a project in tmp_path, keys made
with the installed `cxrun`, driven with httpx as a CRM (events) and a CI script (runs, reads,
controls) would; the server's runtime, or a separate `cxrun runtime`, runs what the API queues."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import yaml
from apiserver import Served, answer, command, follow, jobs, make_key, make_keys, poll, serving
from conftest import CONTACTS, write_project
from servers import FakeServer, OpenAI, Reply, Request, echoing
from test_durable import state_rows
from test_events import LISTENER
from test_io_runtime import KEY, Model, llm, people, published, record_of

from cxrun.ops import open_context

ROWS = 40  # rows of the slow spinner: 2 s of calls at 2 at a time, 0.1 s each
SLOW_S = 0.1
LEAKY = "4"  # the contact whose AI call gets a 400 that quotes every request header

GREET = """table: contacts
key: id
triggers:
  - event: contact.created
    schema:
      type: object
      required: [id]
      properties:
        id: {type: string}
        email: {type: string, format: email}
    select: "CAST(id AS VARCHAR) = $id"
steps:
  - id: hello
    log: "Hello {{ first_name }}"
  - id: draft
    ai: {provider: llm, model: echo, prompt: "Write to {{ first_name }}, record {{ id }}",
         output: draft}
  - id: vip
    tag: vip
    when: "lifetime_value > 1000"
"""

GATE = """table: contacts
key: id
steps:
  - id: check
    approval: {prompt: "Send to {{ first_name }}?"}
  - id: sent
    log: "sent to {{ first_name }}"
"""

SLOW = """table: people
key: id
limits: {concurrency: 2}
steps:
  - id: draft
    ai: {provider: llm, model: slow, prompt: "Write to record {{ id }}", output: draft}
"""

FLAKY = """table: contacts
key: id
steps:
  - id: draft
    ai: {provider: llm, model: flaky, prompt: "Write to record {{ id }}", output: draft}
  - id: size
    set: {n: "length(draft)"}
"""


class Provider:
    """The project's OpenAI-compatible provider, by model: `slow` is test_io_runtime's Model
    taking SLOW_S an answer; `flaky` refuses the records in `refuse` (400: they fail); `echo`
    answers with the Authorization header it received, and quotes every header in a 400 to
    record LEAKY. A leak of the key would show in whatever cxrun keeps of these answers."""

    def __init__(self) -> None:
        self.slow = Model(delay=SLOW_S)
        self.refuse: set[str] = set()
        self.calls: Counter[tuple[str, str]] = Counter()
        self.authorizations: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        model, record = request.json()["model"], record_of(request)
        with self._lock:
            self.authorizations.add(request.headers.get("authorization", ""))
            self.calls[(model, record)] += 1
        if model == "slow":
            return self.slow(request)
        if model == "flaky" and record in self.refuse:
            return OpenAI.error(400, f"record {record} is refused", "invalid_request_error")
        if model == "echo" and record == LEAKY:
            return echoing(400)(request)
        return OpenAI.answer(f"Dear {record}, you sent {request.headers['authorization']}")


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[FakeServer, Provider]]:
    behaviour = Provider()
    with FakeServer(behaviour) as server:
        yield server, behaviour


def make_project(root: Path, spinners: dict[str, str], tables: dict[str, str], url: str) -> Path:
    """A published project whose provider's key is one of its secrets, in the environment of
    no cxrun process."""
    write_project(root, spinners, tables, yaml.safe_dump({"name": "api", "providers": llm(url)}))
    open_context(str(root)).secrets.set("LLM_KEY", KEY)
    published(root)
    return root


@pytest.fixture(scope="module")
def api_project(tmp_path_factory: pytest.TempPathFactory, provider) -> Path:
    return make_project(
        tmp_path_factory.mktemp("api") / "proj",
        {"greet": GREET, "gate": GATE, "slow": SLOW, "flaky": FLAKY},
        {"contacts": CONTACTS, "people": people(ROWS)},
        provider[0].url,
    )


@pytest.fixture(scope="module")
def served(api_project: Path) -> Iterator[Served]:
    with serving(api_project) as server:
        yield server


@pytest.fixture(scope="module")
def keys(api_project: Path) -> dict[str, str]:
    """A CRM's trigger key, a CI script's read key and an operator's control key."""
    return make_keys(api_project, {"crm": ("trigger",), "ci": ("read",), "ops": ("control",)})


@pytest.fixture(scope="module")
def crm(served: Served, keys: dict[str, str]) -> httpx.Client:
    return served.client(keys["crm"])


@pytest.fixture(scope="module")
def ci(served: Served, keys: dict[str, str]) -> httpx.Client:
    return served.client(keys["ci"])


@pytest.fixture(scope="module")
def ops(served: Served, keys: dict[str, str]) -> httpx.Client:
    return served.client(keys["ops"])


def records(client: httpx.Client, job: int) -> dict[str, dict[str, Any]]:
    listed = answer(client.get(f"/jobs/{job}/records"), 200)
    return {record["record"]: record for record in listed}


def journey(client: httpx.Client, job: int, record: str) -> list[tuple[str, str]]:
    entries = answer(client.get(f"/jobs/{job}/records/{record}/journey"), 200)
    return [(entry["step"], entry["status"]) for entry in entries]


def slow_calls(provider: tuple[FakeServer, Provider]) -> int:
    return sum(provider[1].slow.calls.values())


# ---- flows ---------------------------------------------------------------------------------


def test_an_event_from_a_crm_is_run_by_the_servers_runtime_and_read_to_its_end(served, crm, ci):
    health = poll(
        lambda: answer(served.client().get("/health"), 200), lambda h: h["runtime"] == "up"
    )
    assert health == {"status": "ok", "state": "readable", "runtime": "up"}
    posted = crm.post(
        "/events/contact.created",
        json={"id": "1", "email": "ada@example.org"},
        headers={"Idempotency-Key": "crm-1"},
    )
    received = answer(posted, 202)
    assert (received["event"], received["id"], received["received_already"]) == (
        "contact.created",
        "crm-1",
        False,
    )
    [queued] = received["jobs"]
    assert (queued["spinner"], queued["trigger"], queued["status"], queued["total"]) == (
        "greet",
        "event",
        "queued",
        1,
    )

    job = follow(ci, queued["job"])
    assert (job["status"], job["completed"], job["failed"]) == ("completed", 1, 0), job
    assert job["prompt_tokens"] > 0 and job["records"]["completed"] == 1
    assert [step["step"] for step in job["steps"]] == ["hello", "draft", "vip"]
    record = records(ci, job["job"])["1"]
    assert (record["status"], record["tags"]) == ("completed", ["vip"])
    assert record["outputs"]["draft"].startswith("Dear 1, you sent Bearer ")
    assert journey(ci, job["job"], "1") == [
        ("hello", "completed"),
        ("draft", "completed"),
        ("vip", "completed"),
    ]
    listed = answer(ci.get("/jobs", params={"spinner": "greet", "status": "completed"}), 200)
    assert job["job"] in [j["job"] for j in listed]
    assert answer(ci.get("/jobs", params={"spinner": "gate"}), 200) == []
    live = answer(ci.get("/live"), 200)
    assert live["runtime"]["up"] and live["jobs"]["completed"] >= 1 and live["warnings"] == []


def test_the_same_idempotency_key_or_payload_id_answers_200_and_starts_nothing(crm, ci, provider):
    before = len(jobs(ci))
    keyed = answer(
        crm.post("/events/contact.created", json={"id": "2"}, headers={"Idempotency-Key": "k-2"}),
        202,
    )
    numbers = [j["job"] for j in keyed["jobs"]]
    again = crm.post(  # a retry by the CRM, even with another body: the same event
        "/events/contact.created", json={"id": "5"}, headers={"Idempotency-Key": "k-2"}
    )
    repeated = answer(again, 200)
    assert repeated["received_already"] is True and repeated["id"] == "k-2"
    assert [j["job"] for j in repeated["jobs"]] == numbers

    by_id = answer(crm.post("/events/contact.created", json={"id": "5"}), 202)
    assert by_id["id"] == "5"  # the payload's id names the event when no header does
    same = answer(crm.post("/events/contact.created", json={"id": "5", "email": "b@x.org"}), 200)
    assert same["received_already"] is True
    assert [j["job"] for j in same["jobs"]] == [j["job"] for j in by_id["jobs"]]

    assert len(jobs(ci)) == before + 2
    for number in [*numbers, by_id["jobs"][0]["job"]]:
        assert follow(ci, number)["status"] == "completed"
    calls = provider[1].calls
    assert (calls[("echo", "2")], calls[("echo", "5")]) == (1, 1)  # each run once
    assert len(jobs(ci)) == before + 2


def test_a_ci_script_starts_a_run_with_where_and_limit_and_answers_its_approvals(ops, ci):
    started = ops.post("/spinners/gate/runs", json={"where": "lifetime_value > 1000", "limit": 2})
    job = answer(started, 202)
    assert (job["spinner"], job["trigger"], job["status"], job["total"]) == (
        "gate",
        "manual",
        "queued",
        2,
    )
    parked = poll(
        lambda: answer(ci.get(f"/jobs/{job['job']}"), 200),
        lambda found: found["status"] == "waiting" and found["waiting"] == 2,
    )
    assert "awaiting approval" in parked["reason"]
    waiting = records(ci, job["job"])
    assert {r["status"] for r in waiting.values()} == {"waiting"}
    first, second = sorted(waiting)
    assert {first, second} <= {"1", "3", "5"}  # lifetime_value > 1000

    approved = answer(ops.post(f"/jobs/{job['job']}/records/{first}/approve"), 200)
    assert (approved["decision"], approved["answered"], approved["already"]) == (
        "approve",
        [first],
        [],
    )
    poll(  # the runtime took the answer on: the approved record completed, the other waits
        lambda: answer(ci.get(f"/jobs/{job['job']}"), 200),
        lambda found: (found["status"], found["completed"], found["waiting"]) == ("waiting", 1, 1),
    )
    assert records(ci, job["job"])[first]["status"] == "completed"
    assert journey(ci, job["job"], first) == [("check", "completed"), ("sent", "completed")]

    again = answer(ops.post(f"/jobs/{job['job']}/records/{first}/approve"), 200)
    assert again["answered"] == [] and again["already"][0]["record"] == first
    rejected = answer(ops.post(f"/jobs/{job['job']}/reject", json={"all": True}), 200)
    assert rejected["answered"] == [second]
    done = follow(ci, job["job"])
    assert (done["status"], done["completed"], done["skipped"]) == ("completed", 1, 1), done
    assert records(ci, job["job"])[second]["error"] == "rejected by an operator"


def test_a_paused_job_resumed_through_the_api_is_finished_by_the_runtime(ops, ci, provider):
    provider[1].slow.calls.clear()
    job = answer(ops.post("/spinners/slow/runs"), 202)
    poll(lambda: slow_calls(provider), lambda calls: calls >= 4, every=0.02)
    paused = answer(ops.post(f"/jobs/{job['job']}/pause"), 200)
    assert paused["status"] == "paused", paused
    assert answer(ci.get(f"/jobs/{job['job']}"), 200)["processed"] < ROWS
    resumed = answer(ops.post(f"/jobs/{job['job']}/resume"), 202)
    assert resumed["status"] == "queued"  # queued for the runtime, not run in the request
    done = follow(ci, job["job"])
    assert (done["status"], done["completed"]) == ("completed", ROWS), done
    assert max(provider[1].slow.calls.values()) == 1  # no finished call was made again


def test_a_control_key_cancels_a_running_job(ops, ci, provider):
    provider[1].slow.calls.clear()
    job = answer(ops.post("/spinners/slow/runs", json={"limit": ROWS}), 202)
    poll(lambda: slow_calls(provider), lambda calls: calls >= 4, every=0.02)
    cancelled = answer(ops.post(f"/jobs/{job['job']}/cancel"), 200)
    assert cancelled["status"] == "cancelled", cancelled
    done = follow(ci, job["job"])
    assert done["status"] == "cancelled" and done["cancelled"] > 0, done
    assert done["completed"] + done["cancelled"] == ROWS == done["total"]
    assert slow_calls(provider) < ROWS
    conflict = ops.post(f"/jobs/{job['job']}/cancel")
    assert answer(conflict, 409)["error"] == f"job {job['job']} is cancelled already"


def test_a_retry_of_failed_records_is_finished_by_the_runtime(ops, ci, provider):
    provider[1].refuse = {"2", "3"}
    job = answer(ops.post("/spinners/flaky/runs"), 202)
    first = follow(ci, job["job"])
    assert (first["status"], first["completed"], first["failed"]) == ("partial", 3, 2), first
    provider[1].refuse.clear()  # what refused them is fixed
    retried = answer(ops.post(f"/jobs/{job['job']}/retry", json={"where": "id IN (2, 3)"}), 202)
    assert retried["status"] == "queued"  # queued for the runtime, not run in the request
    done = follow(ci, job["job"])
    assert (done["status"], done["completed"], done["failed"]) == ("completed", 5, 0), done
    calls = provider[1].calls
    assert [calls[("flaky", key)] for key in "12345"] == [1, 2, 2, 1, 1]  # answers reused


def test_the_provider_secret_is_in_no_answer(served, crm, ci, provider):
    """The model echoes the key in an answer (record 3) and in an error (record LEAKY)."""
    contacts = ("3", LEAKY)
    numbers = [
        answer(crm.post("/events/contact.created", json={"id": key}), 202)["jobs"][0]["job"]
        for key in contacts
    ]
    answered, refused = (follow(ci, number) for number in numbers)
    assert (answered["completed"], refused["failed"]) == (1, 1), (answered, refused)
    assert records(ci, numbers[0])["3"]["outputs"]["draft"] == "Dear 3, you sent Bearer ***"
    assert "Bearer ***" in records(ci, numbers[1])[LEAKY]["error"]
    steps = answer(ci.get(f"/jobs/{numbers[1]}/records/{LEAKY}/journey"), 200)
    assert "Bearer ***" in steps[1]["error"]
    assert provider[1].authorizations == {f"Bearer {KEY}"}  # the secret's value was sent
    for number, key in zip(numbers, contacts, strict=True):  # every view of them
        ci.get(f"/jobs/{number}")
        ci.get(f"/jobs/{number}/records/{key}/journey")
    ci.get("/jobs")
    ci.get("/live")
    seen = [r for r in served.answers if KEY in r.text]  # every answer of this module so far
    assert seen == [], [(str(r.request.url), r.text) for r in seen]
    assert sum("Bearer ***" in r.text for r in served.answers) >= 5
    assert KEY not in served.stderr


# ---- the runtime elsewhere, and a server stopped mid-job -----------------------------------


class Quiet(NamedTuple):
    root: Path
    model: Model  # the provider's model: takes SLOW_S an answer, counts its calls by record
    key: str  # trigger, read and control


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quiet]:
    """A second project with no server of its own: each test starts (and stops) its own."""
    model = Model(delay=SLOW_S)
    with FakeServer(model) as server:
        root = make_project(
            tmp_path_factory.mktemp("quiet") / "proj",
            {"greet": LISTENER, "slow": SLOW},
            {"contacts": CONTACTS, "people": people(ROWS)},
            server.url,
        )
        yield Quiet(root, model, make_key(root, "ops", "trigger", "read", "control"))


def test_sigterm_as_soon_as_the_port_is_announced_stops_it_cleanly(quiet: Quiet):
    started = Served(quiet.root)  # its runtime is up beside it already
    assert started.stop() == 0, started.stderr  # not killed by the signal: it handled it
    assert "Traceback" not in started.stderr


def test_a_server_without_runtime_queues_and_a_separate_runtime_runs_it(quiet: Quiet):
    with serving(quiet.root, "--no-runtime") as served:
        assert "start `cxrun runtime` to run jobs" in served.stderr
        client = served.client(quiet.key)
        assert answer(served.client().get("/health"), 200)["runtime"] == "down"
        received = answer(client.post("/events/contact.created", json={"id": "3"}), 202)
        number = received["jobs"][0]["job"]
        live = answer(client.get("/live"), 200)
        assert live["jobs"]["queued"] == 1 and not live["runtime"]["up"]
        assert "1 job(s) queued and no runtime is up" in live["warnings"][0]
        assert answer(client.get(f"/jobs/{number}"), 200)["status"] == "queued"
        ran = command(quiet.root, "runtime", "--once")
        assert ran.returncode == 0, ran.stderr
        assert f"job {number}: completed" in ran.stderr
        job = answer(client.get(f"/jobs/{number}"), 200)
        assert (job["status"], job["completed"]) == ("completed", 1)
        assert list(records(client, number)) == ["3"]


def test_sigterm_while_a_job_runs_hands_it_back_and_a_restart_finishes_it(quiet: Quiet):
    first = Served(quiet.root)
    job = answer(first.client(quiet.key).post("/spinners/slow/runs"), 202)["job"]
    poll(lambda: sum(quiet.model.calls.values()), lambda calls: calls >= 4, every=0.02)
    assert first.stop() == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert f"job {job}: queued" in first.stderr, first.stderr
    owned = "SELECT status, owner FROM cx_jobs WHERE job = ?"
    assert state_rows(quiet.root, owned, [job]) == [("queued", None)]  # no dead owner
    assert sum(quiet.model.calls.values()) < ROWS

    with serving(quiet.root) as second:
        done = follow(second.client(quiet.key), job)
    assert (done["status"], done["completed"]) == ("completed", ROWS), done
    assert max(quiet.model.calls.values()) == 1  # what finished before the stop was kept
