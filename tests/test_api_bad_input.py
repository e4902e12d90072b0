"""Bad input to the HTTP API: every case answers its status with `{"error", "hint"}` as JSON,
never a 500, and leaves the jobs as they were (nothing started, nothing changed); the server
behind it, `cxrun serve` in a subprocess, shows no traceback and exits 0 on SIGTERM."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from apiserver import Served, answer, command, follow, jobs, make_key, make_keys, serving
from conftest import CONTACTS, write_project
from test_events import LISTENER, nested
from test_io_runtime import people, published
from test_keys import other_key

from cxrun.api.auth import BAD_KEYS
from cxrun.api.params import MAX_BODY
from cxrun.triggers.events import MAX_DEPTH

RECORDS_A_MONTH = 20  # the plan's limit; `big` has 30 rows

LEADS = """table: contacts
key: id
triggers:
  - event: lead.created
    schema: {type: object, properties: {id: {type: string}}}
    select: "CAST(id AS VARCHAR) = $id"
steps:
  - id: hello
    log: "Hello {{ first_name }}"
"""

BIG = """table: people
key: id
steps:
  - id: hello
    log: "Hello {{ name }}"
"""


@pytest.fixture(scope="module")
def bad_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`greet` listens to contact.created, `audit` and `leads` to lead.created; `big` has more
    rows than the plan allows a month."""
    root = write_project(
        tmp_path_factory.mktemp("bad") / "proj",
        {"greet": LISTENER, "leads": LEADS, "audit": LEADS, "big": BIG},
        {"contacts": CONTACTS, "people": people(30)},
        f"name: bad\nlimits: {{records_per_month: {RECORDS_A_MONTH}}}\n",
    )
    published(root)
    return root


@pytest.fixture(scope="module")
def keys(bad_project: Path) -> dict[str, str]:
    made = make_keys(
        bad_project,
        {
            "crm": ("trigger",),
            "crm-limited": ("trigger", "spinner:greet", "spinner:leads"),
            "ci": ("read",),
            "ops": ("control",),
        },
    )
    made["wrong"] = other_key(made["ci"])  # the right lookup, one character off
    return made


@pytest.fixture(scope="module")
def served(bad_project: Path, keys: dict[str, str]) -> Iterator[Served]:
    """The server, with one finished job (1, greet, record 1) to aim controls at."""
    with serving(bad_project) as server:
        crm, ci = server.client(keys["crm"]), server.client(keys["ci"])
        first = answer(crm.post("/events/contact.created", json={"id": "1"}), 202)
        assert [job["job"] for job in first["jobs"]] == [1]
        assert follow(ci, 1)["status"] == "completed"
        yield server


@pytest.fixture(scope="module")
def ci(served: Served, keys: dict[str, str]) -> httpx.Client:
    return served.client(keys["ci"])


def refusal(response: httpx.Response, status: int, *more: str) -> dict[str, Any]:
    """The error answer: `status`, JSON, a message and a hint (or null), and only `more` else."""
    body: dict[str, Any] = answer(response, status)
    assert set(body) == {"error", "hint", *more}, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    assert body["hint"] is None or (isinstance(body["hint"], str) and body["hint"]), body
    return body


class Case(NamedTuple):
    method: str
    path: str  # under /api/v1, or from the root when it does not start with "/"
    key: str | None  # a key of the `keys` fixture
    status: int
    says: str  # in the error message
    json: Any = None
    content: bytes | tuple[bytes, ...] | None = None
    headers: dict[str, str] | None = None


def event(key: str | None, status: int, says: str, **body: Any) -> Case:
    return Case("POST", "/events/contact.created", key, status, says, **body)


def run(status: int, says: str, **body: Any) -> Case:
    return Case("POST", "/spinners/big/runs", "ops", status, says, **body)


def get(path: str, status: int, says: str, key: str | None = "ci") -> Case:
    return Case("GET", path, key, status, says)


def control(path: str, status: int, says: str, **body: Any) -> Case:
    return Case("POST", path, "ops", status, says, **body)


OVER = b'{"id": "' + b"x" * MAX_BODY + b'"}'
CHUNKED = (OVER[:8], *[b"x" * 65536] * (MAX_BODY // 65536), b'"}')  # no Content-Length
VERY_DEEP = b"[" * 100_000 + b"]" * 100_000
LONG_NUMBER = b'{"id": ' + b"9" * 5000 + b"}"

CASES = {
    # who may call
    "no-key-event": event(None, 401, "no API key", json={"id": "2"}),
    "not-bearer": Case(
        "GET", "/jobs", None, 401, "not `Bearer KEY`", headers={"authorization": "Basic Y2k6"}
    ),
    "wrong-key": get("/jobs", 401, "not valid", key="wrong"),
    "read-posts-event": event("ci", 403, "has no 'trigger' scope", json={"id": "2"}),
    "trigger-reads": get("/jobs/1", 403, "has no 'read' scope", key="crm"),
    "trigger-runs": Case("POST", "/spinners/big/runs", "crm", 403, "has no 'control' scope"),
    "read-cancels": Case("POST", "/jobs/1/cancel", "ci", 403, "has no 'control' scope"),
    "control-reads": get("/jobs", 403, "has no 'read' scope", key="ops"),
    # lead.created: leads, which the key may start, and audit, which it may not
    "limited-to-other-spinners": Case(
        "POST",
        "/events/lead.created",
        "crm-limited",
        403,
        "key 'crm-limited' may not start spinner 'audit', which listens to 'lead.created'",
        json={"id": "2"},
    ),
    # the body
    "not-json": event(
        "crm", 400, "is not valid JSON: Expecting property name", content=b'{"id": "2",}'
    ),
    "not-an-object": event("crm", 400, "must be a JSON object, not an array", content=b"[1, 2]"),
    "not-utf8": event("crm", 400, "is not UTF-8 text", content=b'{"id": "\xff"}'),
    "long-number": event("crm", 400, "a number has too many digits", content=LONG_NUMBER),
    "too-deep": event(
        "crm", 400, f"nested deeper than {MAX_DEPTH} levels", content=nested(MAX_DEPTH + 1).encode()
    ),
    "very-deep": event("crm", 400, f"nested deeper than {MAX_DEPTH} levels", content=VERY_DEEP),
    "over-1-mib": event("crm", 413, "larger than 1 MiB", content=OVER),
    "over-1-mib-chunked": event("crm", 413, "larger than 1 MiB", content=CHUNKED),
    "run-not-json": run(400, "the request body is not JSON", content=b"{"),
    "run-not-an-object": run(400, "must be a JSON object", json=[]),
    "run-unknown-field": run(400, "unknown field 'rows'", json={"rows": 5}),
    "run-limit-text": run(400, "field 'limit' must be a whole number", json={"limit": "abc"}),
    "run-limit-negative": run(400, "field 'limit' must be a whole number", json={"limit": -1}),
    "run-where-number": run(400, "field 'where' must be a string", json={"where": 5}),
    "approve-nothing": control("/jobs/1/approve", 400, "say which records", json={}),
    # what is not there
    "unknown-event": Case(
        "POST", "/events/contact.deleted", "crm", 404, "no published spinner listens", json={}
    ),
    "unknown-spinner": Case("POST", "/spinners/nope/runs", "ops", 404, "unknown spinner 'nope'"),
    "unknown-job": get("/jobs/999", 404, "no job 999"),
    "job-not-a-number": get("/jobs/abc", 404, "no job 'abc'"),
    "job-superscript-digit": get("/jobs/%C2%B2", 404, "no job '²'"),
    "job-too-long": get("/jobs/1234567890123456789", 404, "no job"),
    "unknown-record-journey": get("/jobs/1/records/nope/journey", 404, "has no record 'nope'"),
    "unknown-record-approve": control("/jobs/1/records/nope/approve", 404, "has no record 'nope'"),
    "unknown-job-cancel": control("/jobs/999/cancel", 404, "no job 999"),
    # a bad where
    "run-bad-where": run(400, "no_such_column", json={"where": "no_such_column = 1"}),
    "run-two-statements": run(
        400, "it holds a statement", json={"where": "1 = 1; DROP TABLE cx_jobs"}
    ),
    "retry-bad-where": control("/jobs/1/retry", 400, "syntax error", json={"where": "id ="}),
    "approve-bad-where": control(
        "/jobs/1/approve", 400, "no_such_column", json={"where": "no_such_column"}
    ),
    # bad query values
    "page-0": get("/jobs?page=0", 400, "page='0' is not a whole number from 1"),
    "page-double-minus": get("/jobs?page=--5", 400, "page='--5'"),
    "page-superscript-digit": get("/jobs?page=%C2%B2", 400, "page='²'"),
    "limit-abc": get("/jobs?limit=abc", 400, "limit='abc' is not a whole number"),
    "limit-huge": get(f"/jobs?limit={10**30}", 400, "is not a whole number from 1 to 1000000"),
    "status-bogus": get("/jobs?status=bogus", 400, "status='bogus' is not one of"),
    "records-status-bogus": get("/jobs/1/records?status=bogus", 400, "status='bogus'"),
    "stall-abc": get("/live?stall=abc", 400, "stall='abc' is not a number"),
    "stall-nan": get("/live?stall=nan", 400, "stall='nan'"),
    # what the job's state does not allow
    "cancel-finished": control("/jobs/1/cancel", 409, "job 1 is completed already"),
    "resume-finished": control("/jobs/1/resume", 409, "job 1 is completed, not paused"),
    "retry-nothing-failed": control("/jobs/1/retry", 400, "has no failed records"),
    # routes
    "unknown-route": get("/nope", 404, "no such endpoint: /api/v1/nope", key=None),
    # (a path outside /api is the console's: its 404 is a page, see test_console.py)
    "another-api-version": Case("GET", "api/v2/jobs", None, 404, "no such endpoint: /api/v2"),
    "wrong-method": Case("DELETE", "/jobs/1", "ci", 405, "DELETE is not allowed here"),
    "get-an-event": get("/events/contact.created", 405, "GET is not allowed here", key="crm"),
}


@pytest.fixture(scope="module")
def last_seen() -> dict[str, list[dict[str, Any]]]:
    """The jobs as the previous case of the table left them: the table's cases run one after
    the other, so each one's jobs after are the next one's jobs before."""
    return {}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_with_its_status_and_changes_nothing(
    served, ci, keys, last_seen, case: Case
):
    before = last_seen.get("jobs") or jobs(ci)
    client = served.client(keys[case.key] if case.key else None)
    url = case.path if case.path.startswith("/") else f"{served.origin}/{case.path}"
    response = client.request(
        case.method, url, json=case.json, content=case.content, headers=case.headers
    )
    body = refusal(response, case.status)
    assert case.says in body["error"], body
    last_seen["jobs"] = jobs(ci)
    assert last_seen["jobs"] == before


def test_a_key_revoked_with_the_cli_is_refused_at_once(served, bad_project, ci):
    client = served.client(make_key(bad_project, "dashboard", "read"))
    before = answer(client.get("/jobs"), 200)
    revoked = command(bad_project, "keys", "revoke", "dashboard")
    assert revoked.returncode == 0, revoked.stderr
    refused = refusal(client.get("/jobs"), 401)
    assert refused["error"] == "the API key is not valid (unknown, wrong or revoked)"
    assert "cxrun keys create" in refused["hint"]
    assert jobs(ci) == before


def test_a_key_limited_to_spinners_starts_those(served, keys, ci):
    limited = served.client(keys["crm-limited"])
    received = answer(limited.post("/events/contact.created", json={"id": "2"}), 202)
    assert [job["spinner"] for job in received["jobs"]] == ["greet"]
    assert follow(ci, received["jobs"][0]["job"])["status"] == "completed"


def test_a_payload_failing_the_schema_answers_422_and_keeps_an_invalid_payload_job(
    served, keys, ci
):
    before = jobs(ci)
    crm = served.client(keys["crm"])
    payload = {"id": 3, "email": "not-an-email", "when": "yesterday"}
    posted = crm.post("/events/contact.created", json=payload, headers={"Idempotency-Key": "bad-3"})
    body = refusal(posted, 422, "event", "id", "received_already", "jobs")
    assert body["error"] == "the payload does not fit the schema"
    [job] = body["jobs"]
    assert (job["spinner"], job["status"], job["total"]) == ("greet", "invalid_payload", 0)
    assert [e["pointer"] for e in job["errors"]] == ["/email", "/id", "/when"]
    assert "3 is not of type 'string'" in job["errors"][1]["message"]
    after = jobs(ci)
    assert len(after) == len(before) + 1 and after[0]["job"] == job["job"]
    detail = answer(ci.get(f"/jobs/{job['job']}"), 200)
    assert detail["status"] == "invalid_payload" and detail["errors"] == job["errors"]
    again = answer(
        crm.post("/events/contact.created", json=payload, headers={"Idempotency-Key": "bad-3"}), 200
    )
    assert again["received_already"] and [j["job"] for j in again["jobs"]] == [job["job"]]
    assert jobs(ci) == after


def test_a_plan_limit_reached_answers_429_with_its_usage(served, keys, ci):
    before = jobs(ci)
    refused = refusal(served.client(keys["ops"]).post("/spinners/big/runs"), 429, "usage")
    used = sum(job["total"] for job in before)
    assert refused["error"] == (
        f"plan limit reached: records_per_month is {RECORDS_A_MONTH}; {used} used this month "
        "and this job needs 30"
    )
    assert refused["usage"] == {
        "limit": "records_per_month",
        "allowed": RECORDS_A_MONTH,
        "used": used,
        "needs": 30,
        "resets_on": refused["usage"]["resets_on"],
    }
    assert "raise limits in cxrun.yaml" in refused["hint"]
    assert jobs(ci) == before


def test_a_client_sending_bad_keys_is_slowed_down_and_the_others_are_not(served, keys, ci):
    """From 127.0.0.2 (loopback too): after BAD_KEYS bad keys in a minute, 429 whatever it
    sends, its good key too; 127.0.0.1 goes on as before."""
    before = jobs(ci)
    guesser = httpx.HTTPTransport(local_address="127.0.0.2")
    for n in range(BAD_KEYS):
        wrong = served.client(other_key(keys["ci"])[:-2] + f"{n:02d}", transport=guesser)
        refusal(wrong.get("/jobs"), 401)
    slowed = served.client(keys["ci"], transport=guesser).get("/jobs")
    body = refusal(slowed, 429)
    assert body["error"] == "too many requests with a bad API key from this client"
    wait = int(slowed.headers["retry-after"])
    assert 0 < wait <= 60 and f"wait {wait} s" in body["hint"]
    assert jobs(ci) == before  # the other client is served as ever


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(served, keys, ci, tmp_path):
    """Without --trust-proxy, a client naming other addresses in X-Forwarded-For is still
    counted as itself; with `--trust-proxy 127.0.0.1`, the clients behind the proxy are counted
    one by one, and one guessing keys does not slow down the others."""
    guesser = httpx.HTTPTransport(local_address="127.0.0.3")
    for n in range(BAD_KEYS):
        wrong = served.client(other_key(keys["ci"])[:-2] + f"{n:02d}", transport=guesser)
        refusal(wrong.get("/jobs", headers={"x-forwarded-for": f"10.1.0.{n}"}), 401)
    spoofed = {"x-forwarded-for": "10.9.9.9"}
    refusal(served.client(keys["ci"], transport=guesser).get("/jobs", headers=spoofed), 429)

    with serving(served.root, "--no-runtime", "--trust-proxy", "127.0.0.1") as proxied:
        for n in range(BAD_KEYS + 1):
            wrong = proxied.client(other_key(keys["ci"])[:-2] + f"{n:02d}")
            behind = {"x-forwarded-for": "203.0.113.7"}
            refusal(wrong.get("/jobs", headers=behind), 429 if n == BAD_KEYS else 401)
        other = {"x-forwarded-for": "203.0.113.8"}
        answer(proxied.client(keys["ci"]).get("/jobs", headers=other), 200)
        slowed = proxied.client(keys["ci"]).get("/jobs", headers={"x-forwarded-for": "203.0.113.7"})
        refusal(slowed, 429)


def test_a_trailing_slash_is_the_same_endpoint_not_a_redirect(served, ci):
    assert answer(ci.get("/jobs/"), 200) == answer(ci.get("/jobs"), 200)
    assert answer(ci.get("/jobs/1/"), 200)["job"] == 1
    refusal(ci.get("/nothing/"), 404)


def test_a_bad_trusted_proxy_is_refused_before_the_port_is_taken(bad_project):
    done = command(bad_project, "serve", "--port", "0", "--trust-proxy", "proxy.example")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--trust-proxy: 'proxy.example' is not an IP address or network" in done.stderr


# ---- random requests -------------------------------------------------------------------------

FUZZ_SEED = int(os.environ.get("API_FUZZ_SEED", "20261122"))  # replay another with the variable
FUZZ_REQUESTS = 16
DOCUMENTED = {200, 202, 400, 401, 403, 404, 405, 409, 413, 422, 429}
TRICKY = [
    *("", "0", "-0", "01", "+1", " 1", "1 ", "1e3", "1.5", "--1", "²", "٣", "%00"),
    *("nan", "inf", "-inf", "null", "true", "'", '"', "é", "9" * 30, "1" * 5000),
    *("pending", "completed", "bogus", "id = 1", "id = 1; SELECT 1", "a" * 300),
]
CHARACTERS = "0123456789-+.eE ²٣é'\"%"
PAYLOAD = b'{"id": "1", "email": "ada@example.org", "n": [1, {"a": null}], "s": "\\u00e9"}'


def fuzzed(rng: random.Random) -> tuple[str, str, str, dict[str, Any]]:
    """One random request: method, path, the key to send, and what else httpx sends."""

    def value() -> str:
        if rng.random() < 0.6:
            return rng.choice(TRICKY)
        return "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(1, 8)))

    kind = rng.choice(["query", "path", "event", "run"])
    if kind == "query":
        name = rng.choice(["page", "limit", "status", "stall", "spinner"])
        path = rng.choice(["/jobs", "/jobs/1/records", "/live"])
        return "GET", path, "ci", {"params": {name: value()}}
    if kind == "path":
        path = rng.choice(["/jobs/{}", "/jobs/{}/records", "/jobs/1/records/{}/journey"])
        segment = value().replace("/", "") or "x"  # (an empty one redirects: /jobs/ to /jobs)
        return "GET", path.format(segment), "ci", {}
    if kind == "event":
        body = bytearray(PAYLOAD)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(body) + 1)
            if rng.random() < 0.5:
                body[at:at] = bytes([rng.randrange(256)])
            else:
                del body[at : at + rng.randint(1, 8)]
        return "POST", "/events/contact.created", "crm", {"content": bytes(body)}
    limit = rng.choice([value(), rng.randint(-3, 40), None])
    return "POST", "/spinners/big/runs", "ops", {"json": {"where": value(), "limit": limit}}


def test_random_requests_get_a_documented_answer_never_a_500(served, keys):
    rng = random.Random(FUZZ_SEED)
    for n in range(FUZZ_REQUESTS):
        method, path, key, sent = fuzzed(rng)
        response = served.client(keys[key]).request(method, path, **sent)
        seen = f"API_FUZZ_SEED={FUZZ_SEED}, request {n}: {method} {path} {sent!r:.300}"
        assert response.status_code in DOCUMENTED, (seen, response.status_code, response.text)
        assert response.headers["content-type"] == "application/json", seen
        body = response.json()
        if response.status_code >= 400:
            assert {"error", "hint"} <= set(body) and body["error"], (seen, body)
