"""Failure alerts (`notify:`): one alert per status a job takes, through a real webhook on
127.0.0.1, an SMTP sink or the outbox; never sent twice for one status, sent again for a status
taken again; an endpoint that is down fails no job; a sender killed mid-way is taken over."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_project
from servers import FakeServer, Reply, Request, SmtpServer
from test_durable import cxrun, start, state_rows, wait_until
from test_io_runtime import closed_port

pytest_plugins = ["servers"]

PEOPLE = "id,name\n" + "".join(f"{i},p{i}\n" for i in range(1, 11))
# Rows 7 to 10 fail, three of them with one error and one with another.
PARTIAL = """table: people
key: id
steps:
  - id: hello
    log: "hi {{ name }}"
  - id: check
    set: {x: "CASE WHEN id = 10 THEN error('no address') WHEN id > 6 THEN error('bounced') ELSE 1 END"}
"""
CLEAN = """table: people
key: id
steps:
  - id: hello
    log: "hi {{ name }}"
"""
GATE = """table: people
key: id
steps:
  - id: check
    approval: {prompt: "Go on with {{ id }}?"}
"""
RULE = {"on": ["failed", "partial", "paused", "timed_out"], "channel": "alerts"}


class Receiver:
    """A webhook that keeps every alert it is sent (and can be told to hang or refuse)."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.hang = threading.Event()
        self.hanging = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        if self.hang.is_set():
            self.hanging.set()
            time.sleep(30)
        with self.lock:
            self.alerts.append((request.headers["idempotency-key"], request.json()))
        return Reply(200, {"id": "got-it"})

    def keys(self) -> list[str]:
        with self.lock:
            return [key for key, _ in self.alerts]


def project(
    tmp_path: Path,
    url: str,
    spinners: dict[str, str],
    channels: dict[str, Any] | None = None,
    **config: Any,
) -> Path:
    settings = {
        "name": "alerts",
        "channels": {
            "alerts": {"kind": "webhook", "url": url},
            "box": {"kind": "outbox"},
            **(channels or {}),
        },
        "notify": [RULE],
        **config,
    }
    root = write_project(
        tmp_path / "proj", spinners, {"people": PEOPLE}, yaml.safe_dump(settings, sort_keys=False)
    )
    published = cxrun(root, "publish")
    assert published.returncode == 0, published.stderr
    return root


@pytest.fixture
def receiver(http_server: FakeServer) -> Receiver:
    receiving = Receiver()
    http_server.handler = receiving
    return receiving


def detail(root: Path, job: int) -> dict[str, Any]:
    shown = cxrun(root, "job", str(job), "--json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def test_a_partial_job_sends_one_alert_and_a_completed_one_none(tmp_path, http_server, receiver):
    root = project(
        tmp_path,
        f"{http_server.url}/hook",
        {"partial": PARTIAL, "clean": CLEAN},
        serve={"public_url": "https://ops.example.org/"},
    )

    assert cxrun(root, "run-now", "partial").returncode == 3
    assert cxrun(root, "run-now", "clean").returncode == 0
    assert cxrun(root, "runtime", "--once").returncode == 0  # nothing more to send

    assert receiver.keys() == ["cxrun-1-alert-partial-1"]
    alert = receiver.alerts[0][1]
    assert (alert["job"], alert["spinner"], alert["version"], alert["status"]) == (
        1,
        "partial",
        1,
        "partial",
    )
    assert alert["reason"] == "4 of 10 records failed"
    assert alert["counts"] == {
        "total": 10,
        "completed": 6,
        "failed": 4,
        "skipped": 0,
        "waiting": 0,
        "cancelled": 0,
    }
    assert [(e["step"], e["count"]) for e in alert["errors"]] == [("check", 3), ("check", 1)]
    assert "bounced" in alert["errors"][0]["error"]
    assert "no address" in alert["errors"][1]["error"]
    assert alert["link"] == "https://ops.example.org/?job=1"
    assert "Job 1 (partial v1) is partial: 4 of 10 records failed" in alert["text"]
    shown = detail(root, 1)
    assert shown["status"] == "partial"
    assert [(a["status"], a["n"], a["state"]) for a in shown["alerts"]] == [("partial", 1, "sent")]
    assert detail(root, 2)["alerts"] == []
    text = cxrun(root, "job", "1").stdout
    assert "alert: partial (#1) through alerts: sent" in text


def test_each_pause_sends_an_alert_of_its_own(tmp_path, http_server, receiver):
    root = project(tmp_path, f"{http_server.url}/hook", {"gate": GATE})
    assert cxrun(root, "run-now", "gate").returncode == 6  # waiting for approvals
    assert cxrun(root, "pause", "1").returncode == 0
    assert cxrun(root, "resume", "1").returncode == 6  # its records park again
    assert cxrun(root, "pause", "1").returncode == 0

    assert receiver.keys() == ["cxrun-1-alert-paused-1", "cxrun-1-alert-paused-2"]
    assert [a["reason"] for _, a in receiver.alerts] == ["paused by an operator"] * 2
    assert detail(root, 1)["status"] == "paused"


def test_an_alert_endpoint_that_is_down_fails_no_job(tmp_path):
    down = f"http://127.0.0.1:{closed_port()}/hook"
    root = project(
        tmp_path,
        down,
        {"partial": PARTIAL},
        notify=[{**RULE, "retry": {"attempts": 2, "backoff": "10ms"}}],
    )

    done = cxrun(root, "run-now", "partial", "--json")

    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout)["status"] == "partial"
    shown = detail(root, 1)
    assert shown["status"] == "partial" and shown["failed"] == 4  # as without alerts
    [alert] = shown["alerts"]
    assert (alert["state"], alert["attempts"]) == ("failed", 2)
    assert "connection error" in alert["error"]
    assert "FAILED after 2 attempt(s)" in cxrun(root, "job", "1").stdout
    assert cxrun(root, "runtime", "--once").returncode == 0
    assert detail(root, 1)["alerts"] == shown["alerts"]  # a failed alert is not tried again


def test_a_spinners_rules_add_to_the_projects_and_reach_smtp_and_the_outbox(
    tmp_path, http_server, receiver, smtp_server: SmtpServer
):
    own = CLEAN + (
        "notify:\n"
        "  - {on: [completed], channel: mail, to: ops@example.org}\n"
        "  - {on: [completed], channel: box, to: desk}\n"
    )
    mail = {"kind": "smtp", "host": "127.0.0.1", "port": smtp_server.port, "from": "cx@x.org"}
    spinners = {"own": own, "clean": CLEAN}
    root = project(tmp_path, f"{http_server.url}/hook", spinners, {"mail": mail})

    assert cxrun(root, "run-now", "own").returncode == 0
    assert cxrun(root, "run-now", "clean").returncode == 0  # the rule is own's alone

    assert receiver.keys() == []  # the project's rule is for failures
    [sent] = smtp_server.messages
    assert sent.subject == "cxrun: job 1 (own v1) completed"
    assert sent.rcpt_tos == ["ops@example.org"]
    assert "Job 1 (own v1) is completed." in sent.text
    outbox = json.loads(cxrun(root, "outbox", "--json").stdout)
    assert [(m["job"], m["step"], m["recipient"]) for m in outbox] == [(1, "alert:completed", "desk")]


def test_a_runtime_sends_the_alerts_of_the_jobs_it_runs(tmp_path, http_server, receiver):
    root = project(tmp_path, f"{http_server.url}/hook", {"partial": PARTIAL})
    runtime = start(root, "runtime")
    try:
        assert cxrun(root, "run-now", "partial", "--detach").returncode == 0
        assert wait_until(lambda: receiver.keys() == ["cxrun-1-alert-partial-1"], 60)
    finally:
        runtime.send_signal(signal.SIGTERM)
        _, err = runtime.communicate(timeout=60)
    assert runtime.returncode == 0, err
    assert "alert of job 1 (partial) through alerts: sent" in err
    assert receiver.keys() == ["cxrun-1-alert-partial-1"]


def test_an_alert_whose_sender_died_goes_out_again_with_the_same_key(
    tmp_path, http_server, receiver
):
    root = project(tmp_path, f"{http_server.url}/hook", {"partial": PARTIAL})
    receiver.hang.set()  # the first try hangs: the sender is killed while it waits
    sender = start(root, "run-now", "partial")
    assert receiver.hanging.wait(60)
    sender.kill()
    sender.wait()
    assert state_rows(root, "SELECT j.status, a.state FROM cx_jobs AS j, cx_alerts AS a") == [
        ("partial", "sending")
    ]
    receiver.hang.clear()

    assert cxrun(root, "runtime", "--once").returncode == 0

    assert receiver.keys() == ["cxrun-1-alert-partial-1"]  # the hung try never answered
    assert [a["state"] for a in detail(root, 1)["alerts"]] == ["sent"]


@pytest.mark.parametrize(
    ("notify", "says"),
    [
        ([{"on": ["failed"], "channel": "nope"}], "unknown channel 'nope'"),
        ([{"on": ["failed"], "channel": "mail"}], "a smtp channel needs `to:`"),
        ([{"on": ["exploded"], "channel": "alerts"}], "notify.0.on.0"),
        ([{"on": [], "channel": "alerts"}], "notify.0.on"),
    ],
)
def test_bad_rules_in_cxrun_yaml_are_refused_with_where(tmp_path, notify, says):
    settings = {
        "name": "alerts",
        "channels": {
            "alerts": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"},
            "mail": {"kind": "smtp", "host": "127.0.0.1", "from": "cx@x.org"},
        },
        "notify": notify,
    }
    config = yaml.dump(settings)
    root = write_project(tmp_path / "proj", {"clean": CLEAN}, {"people": PEOPLE}, config)

    done = cxrun(root, "publish")

    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr
    assert "fix cxrun.yaml and try again" in done.stderr


def test_a_spinners_rule_naming_an_unknown_channel_fails_publish(tmp_path, http_server):
    bad = CLEAN + "notify: [{on: [failed], channel: pager}]\n"
    root = write_project(
        tmp_path / "proj",
        {"bad": bad},
        {"people": PEOPLE},
        yaml.dump({"name": "a", "channels": {"box": {"kind": "outbox"}}}),
    )

    done = cxrun(root, "publish")

    assert done.returncode == 2
    assert "notify[0]: unknown channel 'pager' (channels in cxrun.yaml: box)" in done.stderr


EVENT = """table: people
key: id
triggers:
  - event: person.added
    schema: {type: object, required: [id], properties: {id: {type: integer}}}
    select: "id = $id"
steps:
  - id: hello
    log: "hi {{ name }}"
"""


def test_serve_sends_alerts_without_a_runtime_and_the_console_shows_them(
    tmp_path, http_server, receiver
):
    from apiserver import answer, make_keys, serving
    from consoleweb import page, signed_in

    root = project(
        tmp_path,
        f"{http_server.url}/hook",
        {"partial": PARTIAL, "greet": EVENT},
        notify=[{"on": ["partial", "invalid_payload"], "channel": "alerts"}],
    )
    assert cxrun(root, "run-now", "partial").returncode == 3
    keys = make_keys(root, {"ops": ("read", "trigger")})
    with serving(root, "--no-runtime") as served:
        api = served.client(keys["ops"])
        refused = answer(api.post("/events/person.added", json={"id": "seven"}), 422)
        job = refused["jobs"][0]["job"]
        assert wait_until(lambda: len(receiver.keys()) == 2, 30)  # from the server's courier
        console = page(signed_in(served, keys["ops"]), "/?job=1", secret=keys["ops"])
    assert receiver.keys() == ["cxrun-1-alert-partial-1", f"cxrun-{job}-alert-invalid_payload-1"]
    assert "payload does not fit the schema" in receiver.alerts[1][1]["reason"]
    assert "partial #1 → alerts: sent" in console
