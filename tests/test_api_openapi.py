"""The OpenAPI document of `cxrun serve`, held to the real server: it documents every route of
the table and nothing else, and every answer, success or error, fits the schema it gives for
that route and status. One server (the installed `cxrun serve`, its runtime beside it) serves
the module; keys are made with `cxrun keys create`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from conftest import CONTACTS, EXECUTABLE, write_project
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from test_events import LISTENER

from cxrun.api import routes
from cxrun.api.app import PREFIX
from cxrun.api.params import MAX_BODY
from cxrun.base.enums import JobStatus
from cxrun.base.models import Job

DOCUMENT = json.loads(resources.files("cxrun.api").joinpath("openapi.json").read_text())
URI = "urn:cxrun:openapi"
REGISTRY = Registry().with_resource(
    URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

CONFIG = """name: api
providers:
  demo: {kind: echo}
limits: {records_per_month: 100}
"""

GATE = """table: contacts
key: id
steps:
  - id: hello
    log: "hi {{ first_name }}"
  - id: check
    approval: {prompt: "Send to {{ email }}?"}
    when: "lifetime_value > 1000"
"""

FLAKY = """table: contacts
key: id
steps:
  - id: draft
    ai: {provider: demo, model: echo-1, prompt: "Hello {{ first_name }}", output: draft}
  - id: boom
    when: "id = 4"
    set: {x: "error('boom ' || first_name)"}
"""

BULK = """table: many
key: id
steps:
  - id: hello
    log: "hi {{ name }}"
"""

MANY = "id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 151))  # over the plan's 100
SETTLED = {"waiting", "completed", "partial", "failed", "cancelled", "paused"}
BAD_KEY = "cxr_" + "x" * 43
ENV = {k: v for k, v in os.environ.items() if k not in ("CXRUN_PROJECT", "CXRUN_NOW")}


# ---- the document -------------------------------------------------------------------------


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def resolve(item: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A local `$ref` followed (once), and the JSON pointer it pointed at."""
    if "$ref" not in item:
        return item, None
    pointer = item["$ref"].removeprefix("#")
    found: Any = DOCUMENT
    for part in pointer.strip("/").split("/"):
        found = found[part.replace("~1", "/").replace("~0", "~")]
    return found, pointer


def escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def schema_pointer(method: str, route: str, status: int) -> str:
    """Where the document keeps the schema of this route's answer with this status."""
    responses = DOCUMENT["paths"][PREFIX + route][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {route} answered {status}: not documented"
    response, pointer = resolve(responses[str(status)])
    where = pointer or f"/paths/{escape(PREFIX + route)}/{method.lower()}/responses/{status}"
    assert "application/json" in response["content"], where
    return where + "/content/application~1json/schema"


def problems(body: Any, pointer: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"{URI}#{pointer}"},
        registry=REGISTRY,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    return sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body))


def test_every_route_of_the_table_is_documented_and_nothing_else() -> None:
    table = {(method, PREFIX + path): scope for method, path, scope, _ in routes.TABLE}
    documented = {(method, path): operation for method, path, operation in operations()}
    assert set(documented) == set(table)
    for route, scope in table.items():
        operation = documented[route]
        if scope is None:
            assert operation["security"] == [], route
            assert "No key needed" in operation["description"], route
        else:
            assert operation["security"] == [{"bearer": [scope]}], route
            assert f"Scope: `{scope}`" in operation["description"], route
            for status in ("401", "403", "429", "503"):
                assert status in operation["responses"], (route, status)


def test_the_document_is_openapi_3_1_in_its_structure() -> None:
    assert re.fullmatch(r"3\.1\.\d+", DOCUMENT["openapi"])
    assert DOCUMENT["info"]["title"] and isinstance(DOCUMENT["info"]["version"], str)
    assert DOCUMENT["paths"]
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations():
        assert operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status), (method, path, status)
            found, _ = resolve(response)
            assert found["description"], (method, path, status)
            for media in found.get("content", {}).values():
                jsonschema.Draft202012Validator.check_schema(resolve(media["schema"])[0])
        declared = [resolve(p)[0] for p in operation.get("parameters", [])]
        in_path = {p["name"] for p in declared if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", path)), (method, path)
        assert all(p["required"] for p in declared if p["in"] == "path"), (method, path)
    for schema in DOCUMENT["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_ref_points_at_something() -> None:
    refs = re.findall(r'"\$ref": "(#[^"]+)"', json.dumps(DOCUMENT))
    assert refs
    for ref in set(refs):
        resolve({"$ref": ref})


def test_an_answer_that_drifts_from_the_document_does_not_fit() -> None:
    """The check can fail: a Job as to_json() makes it fits; with a field more or less, an
    unknown status or a time that is not one, it does not."""
    made = Job(
        1, "gate", 1, "manual", JobStatus.QUEUED, None, "contacts", *[0] * 9, 0.0, None, None, None
    )
    job, pointer = made.to_json(), "/components/schemas/Job"
    assert problems(job, pointer) == []
    assert problems({**job, "owner": None}, pointer)
    assert problems({k: v for k, v in job.items() if k != "cost"}, pointer)
    assert problems({**job, "status": "done"}, pointer)
    assert problems({**job, "created_at": "yesterday"}, pointer)
    assert problems({**job, "reason": 1}, pointer)


# ---- the server ---------------------------------------------------------------------------


def cxrun(root: Path, *args: str) -> str:
    done = subprocess.run(
        [str(EXECUTABLE), *args], cwd=root, capture_output=True, text=True, timeout=120, env=ENV
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def serving(root: Path, log: Path) -> Iterator[str]:
    """`cxrun serve --port 0` on the project, and the base URL it says it serves."""
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(EXECUTABLE), "serve", "--port", "0", "--project", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=ENV,
        )
    try:
        yield address(process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def address(process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"serving (http://127\.0\.0\.1:\d+)/api/v1 \(", log.read_text())
        if found:
            return found.group(1)
        assert process.poll() is None, f"cxrun serve ended: {log.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"cxrun serve said nothing in 30 s: {log.read_text()}")


@dataclass
class Api:
    client: httpx.Client
    keys: dict[str, str]
    log: Path
    runs: dict[str, int] = field(default_factory=dict)

    def call(
        self,
        method: str,
        route: str,
        status: int,
        who: str | None = None,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> Any:
        """`method route` (its {...} filled from `path`) as `who` (a key's name), which must
        answer `status` with a body that fits the document's schema for them."""
        path = options.pop("path", {})
        sent = dict(headers or {})
        if who is not None:
            sent["Authorization"] = f"Bearer {self.keys.get(who, who)}"
        url = PREFIX + route.format(**path)
        response = self.client.request(method, url, headers=sent, **options)
        shown = f"{method} {url}: {response.status_code} {response.text[:2000]}"
        assert response.status_code == status, f"{shown}\n{self.log.read_text()[-3000:]}"
        return conforms(response, method, route)

    def runtime_up(self) -> None:
        """Once the server's runtime has beaten (it starts beside the server)."""
        deadline = time.monotonic() + 30
        while self.call("GET", "/health", 200)["runtime"] != "up":
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def settled(self, job: int, statuses: set[str] = SETTLED) -> dict[str, Any]:
        """The job once its status is one of `statuses` (the runtime runs it meanwhile)."""
        deadline = time.monotonic() + 30
        while True:
            found: dict[str, Any] = self.call("GET", "/jobs/{job}", 200, "read", path={"job": job})
            if found["status"] in statuses or time.monotonic() > deadline:
                assert found["status"] in statuses, found
                return found
            time.sleep(0.1)


def conforms(response: httpx.Response, method: str, route: str) -> Any:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    found = problems(body, schema_pointer(method, route, response.status_code))
    assert not found, f"{method} {route} {response.status_code}: {found}\n{body}"
    return body


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The server, its runtime up, with the runs of RUNS queued at its start (so that the
    runtime takes them to rest while the first tests run)."""
    root = write_project(
        tmp_path_factory.mktemp("api") / "proj",
        {"greet": LISTENER, "gate": GATE, "flaky": FLAKY, "bulk": BULK},
        {"contacts": CONTACTS, "many": MANY},
        CONFIG,
    )
    cxrun(root, "publish")
    keys = make_keys(
        root,
        read=["--scope", "read"],
        trigger=["--scope", "trigger"],
        control=["--scope", "control"],
        narrow=["--scope", "trigger", "--spinner", "gate"],
    )
    log = root.parent / "serve.log"
    with serving(root, log) as url, httpx.Client(base_url=url, trust_env=False, timeout=30) as c:
        served = Api(c, keys, log)
        served.runtime_up()
        for name, spinner in RUNS.items():
            run = served.call(
                "POST", "/spinners/{name}/runs", 202, "control", path={"name": spinner}
            )
            assert run["status"] in ("queued", "running"), run
            served.runs[name] = run["job"]
        yield served


def make_keys(root: Path, **options: list[str]) -> dict[str, str]:
    """`cxrun keys create NAME OPTIONS --json` for each name, side by side; the plain keys."""
    making = {
        name: subprocess.Popen(
            [str(EXECUTABLE), "keys", "create", name, *more, "--json"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for name, more in options.items()
    }
    keys = {}
    for name, process in making.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        keys[name] = json.loads(out)["key"]
    return keys


RUNS = {"cancel": "gate", "pause": "gate", "answer": "gate", "flaky": "flaky"}


@pytest.fixture(scope="module")
def jobs(api: Api) -> dict[str, int]:
    """The runs of RUNS at rest: gates waiting for approval (records 1, 3 and 5 await it), and
    a flaky run whose record 4 failed."""
    settled = {name: api.settled(job)["status"] for name, job in api.runs.items()}
    assert settled == {
        "cancel": "waiting",
        "pause": "waiting",
        "answer": "waiting",
        "flaky": "partial",
    }
    return api.runs


# ---- the answers --------------------------------------------------------------------------


def test_the_server_answers_the_document_without_a_key(api: Api) -> None:
    assert api.call("GET", "/openapi.json", 200) == DOCUMENT


def test_health_needs_no_key_and_sees_the_runtime(api: Api) -> None:
    assert api.call("GET", "/health", 200) == {"status": "ok", "state": "readable", "runtime": "up"}


def test_every_keyed_route_wants_a_live_key_with_its_scope(api: Api) -> None:
    other = {"read": "control", "trigger": "read", "control": "trigger"}
    for method, route, scope, _ in routes.TABLE:
        if scope is None:
            continue
        path = {"job": 1, "key": "1", "name": "x"}
        refused = api.call(method, route, 401, path=path)
        assert refused["error"] == "no API key"
        wrong = api.call(method, route, 403, other[scope], path=path)
        assert f"no '{scope}' scope" in wrong["error"]
    unknown = api.call("GET", "/jobs", 401, BAD_KEY)
    assert "not valid" in unknown["error"]
    basic = api.call("GET", "/jobs", 401, headers={"Authorization": "Basic eDp5"})
    assert "not `Bearer KEY`" in basic["error"]


def test_an_event_queues_jobs_once_per_id(api: Api) -> None:
    sent = {"json": {"id": "2", "email": "alan@example.org"}}
    first = api.call(
        "POST", "/events/{name}", 202, "trigger", path={"name": "contact.created"}, **sent
    )
    assert first["id"] == "2" and first["received_already"] is False
    assert [job["spinner"] for job in first["jobs"]] == ["greet"]
    again = api.call(
        "POST", "/events/{name}", 200, "trigger", path={"name": "contact.created"}, **sent
    )
    assert again["received_already"] is True
    assert [job["job"] for job in again["jobs"]] == [job["job"] for job in first["jobs"]]
    keyed = {"headers": {"Idempotency-Key": "crm-4711"}, "json": {"id": "1"}}
    started = api.call(
        "POST", "/events/{name}", 202, "trigger", path={"name": "contact.created"}, **keyed
    )
    assert started["id"] == "crm-4711" and started["jobs"][0]["total"] == 1  # selected by id


def test_a_payload_that_does_not_fit_keeps_an_invalid_payload_job(api: Api) -> None:
    payload = {"id": "3", "email": "not-an-email"}
    bad = api.call(
        "POST", "/events/{name}", 422, "trigger", path={"name": "contact.created"}, json=payload
    )
    assert bad["error"] == "the payload does not fit the schema"
    (job,) = bad["jobs"]
    assert job["status"] == "invalid_payload"
    assert [e["pointer"] for e in job["errors"]] == ["/email"]
    detail = api.call("GET", "/jobs/{job}", 200, "read", path={"job": job["job"]})
    assert detail["errors"] == job["errors"]
    empty = api.call("POST", "/events/{name}", 422, "trigger", path={"name": "contact.created"})
    assert empty["jobs"][0]["errors"] == [{"pointer": "", "message": "'id' is a required property"}]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b"[" * 40 + b"]" * 40, b"\xff\xfe{"],
    ids=["not-json", "array", "too-deep", "not-utf8"],
)
def test_a_payload_that_is_not_a_json_object_is_refused(api: Api, body: bytes) -> None:
    refused = api.call(
        "POST", "/events/{name}", 400, "trigger", path={"name": "contact.created"}, content=body
    )
    assert "nothing was started" in refused["hint"]


def test_event_refusals(api: Api) -> None:
    unknown = api.call("POST", "/events/{name}", 404, "trigger", path={"name": "nobody"}, json={})
    assert "contact.created" in unknown["hint"]
    narrow = api.call(
        "POST", "/events/{name}", 403, "narrow", path={"name": "contact.created"}, json={"id": "1"}
    )
    assert "may not start spinner 'greet'" in narrow["error"]
    big = b" " * (MAX_BODY + 1)
    api.call(
        "POST", "/events/{name}", 413, "trigger", path={"name": "contact.created"}, content=big
    )


def test_a_run_is_queued_with_its_options(api: Api) -> None:
    options = {"where": "id <= 3", "limit": 2, "priority": "high"}
    job = api.call(
        "POST", "/spinners/{name}/runs", 202, "control", path={"name": "gate"}, json=options
    )
    assert job["status"] in ("queued", "running") and job["total"] == 2
    assert job["trigger"] == "manual" and job["priority"] == "high"
    detail = api.call("GET", "/jobs/{job}", 200, "read", path={"job": job["job"]})
    assert detail["priority"] == "high"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"where": "nosuch = 1"}, 'column "nosuch" not found'),
        ({"rows": 3}, "unknown field 'rows'"),
        ({"limit": "3"}, "field 'limit' must be a whole number or null"),
        ({"priority": "urgent"}, "priority: 'urgent' is not a priority"),
        ({"priority": 1}, "field 'priority' must be a string or null"),
        ([], "the request body must be a JSON object"),
    ],
)
def test_a_run_with_bad_options_is_refused(api: Api, body: Any, error: str) -> None:
    refused = api.call(
        "POST", "/spinners/{name}/runs", 400, "control", path={"name": "gate"}, json=body
    )
    assert error in refused["error"]


def test_run_refusals(api: Api) -> None:
    api.call("POST", "/spinners/{name}/runs", 404, "control", path={"name": "nope"})
    limit = api.call("POST", "/spinners/{name}/runs", 429, "control", path={"name": "bulk"})
    assert limit["usage"]["limit"] == "records_per_month" and limit["usage"]["needs"] == 150
    big = b" " * (MAX_BODY + 1)
    api.call("POST", "/spinners/{name}/runs", 413, "control", path={"name": "gate"}, content=big)


def test_jobs_are_listed_filtered_and_paged(api: Api, jobs: dict[str, int]) -> None:
    listed = api.call("GET", "/jobs", 200, "read")
    numbers = [job["job"] for job in listed]
    assert numbers == sorted(numbers, reverse=True) and set(jobs.values()) <= set(numbers)
    flaky = api.call("GET", "/jobs", 200, "read", params={"spinner": "flaky", "status": "partial"})
    assert [job["job"] for job in flaky] == [jobs["flaky"]]
    page = api.call("GET", "/jobs", 200, "read", params={"page": 2, "limit": 1})
    assert [job["job"] for job in page] == numbers[1:2]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "bogus"},
        {"page": "0"},
        {"limit": "1000001"},
        {"page": "--5"},
        {"limit": "\u00b2"},
        {"page": "0" * 19 + "5" + "0" * 10},
        {"page": "0" * 19 + "1" + "0" * 5000},
    ],
    ids=["status", "page-0", "limit-big", "two-minus", "superscript", "padded", "huge"],
)
def test_a_bad_query_value_is_a_400(api: Api, query: dict[str, str]) -> None:
    refused = api.call("GET", "/jobs", 400, "read", params=query)
    assert next(iter(query)) in refused["error"]


def test_a_job_in_detail(api: Api, jobs: dict[str, int]) -> None:
    detail = api.call("GET", "/jobs/{job}", 200, "read", path={"job": jobs["flaky"]})
    assert detail["records"]["failed"] == 1 and detail["records"]["completed"] == 4
    assert [step["step"] for step in detail["steps"]] == ["draft", "boom"]
    assert detail["prompt_tokens"] > 0 and "errors" not in detail
    for raw in ("999999", "abc", "\u00b2"):
        api.call("GET", "/jobs/{job}", 404, "read", path={"job": raw})


def test_records_and_a_journey(api: Api, jobs: dict[str, int]) -> None:
    flaky = {"job": jobs["flaky"]}
    records = api.call("GET", "/jobs/{job}/records", 200, "read", path=flaky)
    assert [r["record"] for r in records] == ["1", "2", "3", "4", "5"]
    failed = api.call(
        "GET", "/jobs/{job}/records", 200, "read", path=flaky, params={"status": "failed"}
    )
    assert [(r["record"], r["failed_step"], r["error"]) for r in failed] == [
        ("4", "boom", "boom Edsger")
    ]
    api.call("GET", "/jobs/{job}/records", 400, "read", path=flaky, params={"status": "paused"})
    api.call("GET", "/jobs/{job}/records", 404, "read", path={"job": 999999})
    journey = api.call(
        "GET", "/jobs/{job}/records/{key}/journey", 200, "read", path={**flaky, "key": "4"}
    )
    assert [(e["step"], e["status"]) for e in journey] == [
        ("draft", "completed"),
        ("boom", "failed"),
    ]
    assert journey[0]["usage"] is not None and journey[1]["usage"] is None
    api.call("GET", "/jobs/{job}/records/{key}/journey", 404, "read", path={**flaky, "key": "77"})
    api.call(
        "GET", "/jobs/{job}/records/{key}/journey", 404, "read", path={"job": 999999, "key": "1"}
    )


def test_live_ops(api: Api, jobs: dict[str, int]) -> None:
    live = api.call("GET", "/live", 200, "read", params={"stall": "0"})
    assert live["runtime"]["up"] is True and live["runtime"]["runtimes"]
    assert live["jobs"]["waiting"] >= 3 and live["stall_minutes"] == 0
    assert {(f["spinner"], f["step"]) for f in live["failures"]} == {("flaky", "boom")}
    for stall in ("-1", "nan", "soon"):
        api.call("GET", "/live", 400, "read", params={"stall": stall})


def test_cancel(api: Api, jobs: dict[str, int]) -> None:
    job = {"job": jobs["cancel"]}
    cancelled = api.call("POST", "/jobs/{job}/cancel", 200, "control", path=job)
    assert cancelled["status"] == "cancelled" and cancelled["cancelled"] == 3
    again = api.call("POST", "/jobs/{job}/cancel", 409, "control", path=job)
    assert again["error"].endswith("is cancelled already")
    api.call("POST", "/jobs/{job}/pause", 409, "control", path=job)
    api.call("POST", "/jobs/{job}/resume", 409, "control", path=job)
    nothing = api.call("POST", "/jobs/{job}/retry", 400, "control", path=job)
    assert "no failed records" in nothing["error"]
    for action in ("cancel", "pause", "resume", "retry"):
        api.call("POST", f"/jobs/{{job}}/{action}", 404, "control", path={"job": 999999})


def test_pause_and_resume(api: Api, jobs: dict[str, int]) -> None:
    job = {"job": jobs["pause"]}
    paused = api.call("POST", "/jobs/{job}/pause", 200, "control", path=job)
    assert paused["status"] == "paused" and paused["reason"] == "paused by an operator"
    api.call("POST", "/jobs/{job}/pause", 409, "control", path=job)
    api.call("POST", "/jobs/{job}/retry", 409, "control", path=job)  # it has not finished
    resumed = api.call("POST", "/jobs/{job}/resume", 202, "control", path=job)
    assert resumed["status"] == "queued"
    assert api.settled(jobs["pause"], {"waiting"})["waiting"] == 3


def test_retry(api: Api, jobs: dict[str, int]) -> None:
    job = {"job": jobs["flaky"]}
    for body, error in (
        ({"record": "1"}, "no failed record '1'"),
        ({"where": "nosuch = 1"}, 'column "nosuch" not found'),
        ({"again": True}, "unknown field 'again'"),
    ):
        refused = api.call("POST", "/jobs/{job}/retry", 400, "control", path=job, json=body)
        assert error in refused["error"]
    big = b" " * (MAX_BODY + 1)
    api.call("POST", "/jobs/{job}/retry", 413, "control", path=job, content=big)
    queued = api.call(
        "POST", "/jobs/{job}/retry", 202, "control", path=job, json={"where": "id = 4"}
    )
    assert queued["status"] == "queued"
    again = api.settled(jobs["flaky"], {"partial"})
    journey = api.call(
        "GET", "/jobs/{job}/records/{key}/journey", 200, "read", path={**job, "key": "4"}
    )
    assert [e["attempt"] for e in journey if e["step"] == "boom"] == [1, 2]
    assert again["failed"] == 1


def test_answers(api: Api, jobs: dict[str, int]) -> None:
    job = {"job": jobs["answer"]}
    record = "/jobs/{job}/records/{key}/{decision}"
    one = api.call(
        "POST", record.replace("{decision}", "approve"), 200, "control", path={**job, "key": "1"}
    )
    assert one["decision"] == "approve" and one["answered"] == ["1"] and one["already"] == []
    again = api.call(
        "POST", record.replace("{decision}", "approve"), 200, "control", path={**job, "key": "1"}
    )
    assert again["answered"] == [] and again["already"][0]["record"] == "1"
    api.call(
        "POST", record.replace("{decision}", "reject"), 404, "control", path={**job, "key": "77"}
    )
    api.call(
        "POST",
        record.replace("{decision}", "approve"),
        404,
        "control",
        path={"job": 999999, "key": "1"},
    )
    for body in ({}, {"where": "bad col"}, {"all": "yes"}):
        api.call("POST", "/jobs/{job}/approve", 400, "control", path=job, json=body)
    big = b" " * (MAX_BODY + 1)
    api.call("POST", "/jobs/{job}/reject", 413, "control", path=job, content=big)
    api.call("POST", "/jobs/{job}/reject", 404, "control", path={"job": 999999}, json={"all": True})
    rejected = api.call(
        "POST", "/jobs/{job}/reject", 200, "control", path=job, json={"where": "id = 3"}
    )
    assert rejected["decision"] == "reject" and rejected["answered"] == ["3"]
    rest = api.call("POST", "/jobs/{job}/approve", 200, "control", path=job, json={"all": True})
    assert rest["answered"] == ["5"] and rest["status"]["job"] == jobs["answer"]
    assert api.settled(jobs["answer"], SETTLED - {"waiting"})["waiting"] == 0


def test_too_many_bad_keys_from_one_client_are_slowed_down(api: Api) -> None:
    """From 127.0.0.2 (loopback too), so that the other tests' client is not slowed down."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(
        base_url=api.client.base_url, transport=transport, trust_env=False, timeout=30
    ) as client:
        guesser = Api(client, {}, api.log)
        for _ in range(10):
            guesser.call("GET", "/jobs", 401, BAD_KEY)
        slowed = guesser.call("GET", "/jobs", 429, api.keys["read"])
        assert "too many requests" in slowed["error"]
        event = client.post(
            PREFIX + "/events/contact.created", headers={"Authorization": f"Bearer {BAD_KEY}"}
        )
        assert event.status_code == 429 and int(event.headers["retry-after"]) > 0
        conforms(event, "POST", "/events/{name}")
    assert api.call("GET", "/jobs", 200, "read") is not None  # 127.0.0.1 goes on
