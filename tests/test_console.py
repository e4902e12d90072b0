"""The operator console over HTTP, against `cxrun serve` in a subprocess: signing in (the
cookie's flags, a bad key), CSRF tokens and scopes on what changes a job, pages with no jobs,
with a job of 10,000 records and with a failed job whose error is long and whose values are
HTML, the chart as well-formed SVG, and the key never on a page."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from apiserver import Served, command, make_keys, serving
from conftest import CONTACTS, write_project
from consoleweb import browser, page, sign_in, signed_in, token

from cxrun.api.console import chart
from cxrun.ops.console import Throughput

BULK = """table: many
key: id
steps:
  - id: hello
    log: "hi {{ name }}"
"""

BOOM = """table: odd
key: id
steps:
  - id: hello
    log: "hi {{ name }}"
  - id: boom
    set: {x: "error(repeat('a very long error ', 400) || name)"}
"""

GATE = """table: contacts
key: id
steps:
  - id: check
    approval: {prompt: "Send to {{ email }}?"}
"""

SCRIPT = "<script>alert('key')</script>"
ODD = f'id,name\n"{SCRIPT}",<img src=x onerror=alert(1)>\nplain,"<b>bold</b>"\n'
MANY = "id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 10_001))
RUNS = ("bulk", "boom", "gate", "gate", "gate")  # run before the server starts
JOBS = {"bulk": 1, "boom": 2, "gate": 3, "paused": 4, "answered": 5}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose three spinners ran: 10,000 records, all-failed records, an approval."""
    root = write_project(
        tmp_path_factory.mktemp("console") / "proj",
        {"bulk": BULK, "boom": BOOM, "gate": GATE},
        {"many": MANY, "odd": ODD, "contacts": CONTACTS},
    )
    assert command(root, "publish").returncode == 0
    for name in RUNS:
        done = command(root, "run-now", name)
        assert done.returncode in (0, 1, 3, 6), done.stderr  # completed, failed, partial, waiting
    return root


@pytest.fixture(scope="module")
def keys(root: Path) -> dict[str, str]:
    return make_keys(root, {"viewer": ("read",), "operator": ("read", "control")})


@pytest.fixture(scope="module")
def served(root: Path, keys: dict[str, str]) -> Iterator[Served]:
    with serving(root, "--no-runtime") as served:
        yield served


def test_sign_in_keeps_the_key_in_a_strict_http_only_cookie(
    served: Served, keys: dict[str, str]
) -> None:
    client = browser(served)
    assert client.get("/").headers["location"] == "/sign-in?why=signed-out"
    done = sign_in(client, keys["viewer"])
    assert done.status_code == 303
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith("cxrun_key="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= flags, cookie
    text = page(client, "/", secret=keys["viewer"])
    assert "key: viewer" in text
    signed_out = client.post("/sign-out", data={"csrf": token(text)})
    assert signed_out.status_code == 303
    assert 'cxrun_key=""' in signed_out.headers["set-cookie"]
    assert client.get("/").status_code == 303


def test_a_bad_key_goes_back_to_sign_in_with_why(served: Served) -> None:
    client = browser(served)
    refused = sign_in(client, "cxr_" + "x" * 43)
    assert refused.status_code == 401
    assert "not valid" in refused.text
    assert "cxr_xxxx" not in refused.text  # what was typed is not echoed back
    client.cookies.set("cxrun_key", "cxr_" + "y" * 43)
    assert client.get("/live").headers["location"] == "/sign-in?why=invalid"


def test_the_sign_in_form_needs_its_token(served: Served, keys: dict[str, str]) -> None:
    client = browser(served)
    client.get("/sign-in")
    refused = client.post("/sign-in", data={"key": keys["viewer"], "csrf": "0" * 64})
    assert refused.status_code == 403
    assert "cxrun_key=" not in refused.headers.get("set-cookie", "")


def test_cancel_needs_the_token_and_the_control_scope(served: Served, keys: dict[str, str]) -> None:
    job = JOBS["gate"]
    operator, viewer = signed_in(served, keys["operator"]), signed_in(served, keys["viewer"])
    confirm = page(operator, f"/jobs/{job}/cancel", secret=keys["operator"])
    assert f"Yes, cancel job {job}" in confirm
    for data in ({}, {"csrf": "f" * 64}, {"csrf": token(page(viewer, "/"))}):
        refused = operator.post(f"/jobs/{job}/cancel", data=data)
        assert refused.status_code == 403, refused.text
        assert "security token" in refused.text
    read_only = viewer.post(f"/jobs/{job}/cancel", data={"csrf": token(page(viewer, "/"))})
    assert read_only.status_code == 403
    assert "has no &#x27;control&#x27; scope" in read_only.text
    assert "badge s-waiting" in page(operator, f"/?job={job}")  # nothing changed meanwhile
    done = operator.post(f"/jobs/{job}/cancel", data={"csrf": token(confirm)})
    assert done.status_code == 200, done.text
    assert "Its status is now" in done.text and "s-cancelled" in done.text
    assert keys["operator"] not in done.text


def test_pause_then_resume_hands_the_job_to_the_runtime(
    served: Served, keys: dict[str, str]
) -> None:
    client, job = signed_in(served, keys["operator"]), JOBS["paused"]
    paused = client.post(f"/jobs/{job}/pause", data={"csrf": token(page(client, "/"))})
    assert paused.status_code == 200 and "s-paused" in paused.text, paused.text
    live = page(client, "/fragments/live")
    assert f"job {job} (gate)</a>: paused by an operator" in live
    confirm = page(client, f"/jobs/{job}/resume")
    resumed = client.post(f"/jobs/{job}/resume", data={"csrf": token(confirm)})
    assert resumed.status_code == 200 and "s-queued" in resumed.text  # --no-runtime: it waits
    assert "The runtime picks it up" in resumed.text


def test_retry_failed_queues_the_failed_records_for_the_runtime(
    served: Served, keys: dict[str, str]
) -> None:
    client, job = signed_in(served, keys["operator"]), JOBS["boom"]
    assert "badge s-failed" in page(client, f"/?job={job}")
    confirm = page(client, f"/jobs/{job}/retry", secret=keys["operator"])
    assert f"Retry the failed records of job {job}?" in confirm
    viewer = signed_in(served, keys["viewer"])
    refused = viewer.post(f"/jobs/{job}/retry", data={"csrf": token(page(viewer, "/"))})
    assert refused.status_code == 403 and "badge s-failed" in page(client, f"/?job={job}")
    retried = client.post(f"/jobs/{job}/retry", data={"csrf": token(confirm)})
    assert retried.status_code == 200, retried.text
    assert "s-queued" in retried.text and "The runtime picks it up" in retried.text
    listed = command(served.root, "job", str(job), "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"status": "queued"' in listed.stdout  # the state says so too, not only the page


def test_an_approved_record_shows_as_answered_until_the_runtime_takes_it(
    served: Served, keys: dict[str, str]
) -> None:
    client, job = signed_in(served, keys["operator"]), JOBS["answered"]
    before = page(client, f"/?job={job}")
    assert "5 awaiting approval" in before, before
    approvals = page(client, "/approvals")
    done = client.post(
        "/approvals/answer",
        data={"csrf": token(approvals), "job": str(job), "record": "1", "decision": "approve"},
    )
    assert done.status_code == 200, done.text
    assert "4 awaiting approval, 1 answered, to go on" in done.text, done.text
    assert "4 awaiting approval, 1 answered, to go on" in page(client, f"/?job={job}")


def test_a_job_of_10000_records_is_paged_and_quick(served: Served, keys: dict[str, str]) -> None:
    client, job = signed_in(served, keys["viewer"]), JOBS["bulk"]
    started = time.monotonic()
    first = page(client, f"/?job={job}", secret=keys["viewer"])
    last = page(client, f"/?job={job}&rpage=400", secret=keys["viewer"])
    assert time.monotonic() - started < 5
    assert "10000/10000 processed" in first and "page 1 of 400" in first
    assert first.count('class="key"') == 25
    assert ">10000</a>" in last and "page 400 of 400" in last
    empty = page(client, f"/?job={job}&rstatus=failed")
    assert f"no failed records in job {job}" in empty
    journey = page(client, f"/?job={job}&record=77")
    assert "Journey of record 77" in journey and "hi n77" in journey
    assert page(client, f"/fragments/jobs?job={job}&rpage=2").count('class="key"') == 25


def test_a_long_error_and_html_values_are_escaped(served: Served, keys: dict[str, str]) -> None:
    client, job = signed_in(served, keys["viewer"]), JOBS["boom"]
    text = page(client, f"/?job={job}&rstatus=failed", secret=keys["viewer"])
    assert "<script>alert" not in text and "<img src=x" not in text and "<b>bold" not in text
    assert "&lt;script&gt;alert(&#x27;key&#x27;)&lt;/script&gt;" in text
    assert text.count('<pre class="error">') == 2  # the long error wraps inside its cell
    assert "a very long error " * 50 in text
    journey = page(client, f"/?job={job}&record=plain")
    assert "&lt;b&gt;bold&lt;/b&gt;" in journey and "<b>bold" not in journey
    live = page(client, "/live")
    assert "<img src=x" not in live and "boom" in live


def test_unknown_jobs_and_pages_answer_readable_pages(served: Served, keys: dict[str, str]) -> None:
    client = signed_in(served, keys["viewer"])
    assert "no job 999" in page(client, "/?job=999", 404)
    assert "no such page" in page(client, "/nowhere", 404)
    assert "not one of" in page(client, "/?status=sideways", 400)
    assert "has no record" in page(client, f"/?job={JOBS['bulk']}&record=nope", 404)
    assert "Traceback" not in served.stderr


def test_the_chart_is_well_formed_svg(served: Served, keys: dict[str, str]) -> None:
    client = signed_in(served, keys["viewer"])
    response = client.get("/live/chart.svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(response.text).tag == "{http://www.w3.org/2000/svg}svg"
    now = datetime(2026, 12, 2, 17, 30, 20, tzinfo=UTC)
    drawn = chart.svg(
        Throughput(now, 30, {"job 1 (<a&b>)": [0] * 29 + [120], "job 2 (x)": [3] * 30})
    )
    root = ET.fromstring(drawn)
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"job 1 (<a&b>)", "200", "150", "17:01", "records / min"} <= set(labels)


def test_pages_with_no_jobs_say_so_and_bad_keys_are_slowed_down(tmp_path: Path) -> None:
    root = write_project(tmp_path / "empty")
    key = make_keys(root, {"viewer": ("read",)})["viewer"]
    with serving(root, "--no-runtime") as served:
        client = signed_in(served, key)
        assert "no jobs yet" in page(client, "/", secret=key)
        assert "no run selected" in page(client, "/fragments/jobs", secret=key)
        assert "no record awaits approval" in page(client, "/approvals", secret=key)
        live = page(client, "/live", secret=key)
        assert "no jobs yet" in live and "down" in live
        assert "no running job finished records" in live
        stranger = browser(served)  # the bad-key limit of the API holds for the sign-in form
        assert [sign_in(stranger, "cxr_" + "z" * 43).status_code for _ in range(11)] == [
            401
        ] * 10 + [429]
        assert "too many requests with a bad API key" in sign_in(stranger, key).text
        client.close()
        stranger.close()


def test_the_api_stays_json(served: Served, keys: dict[str, str]) -> None:
    api = httpx.Client(base_url=served.url, headers={"authorization": f"Bearer {keys['viewer']}"})
    assert api.get("/nowhere").headers["content-type"] == "application/json"
    assert api.get("/jobs").json()[0]["job"] == JOBS["answered"]  # newest first
    api.close()
