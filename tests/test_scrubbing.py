"""Secrets are scrubbed from the whole text before anything is cut, collapsed or stored: real
commands against a real server on 127.0.0.1 that echoes the credentials it is sent back, as
they are, with their spaces doubled, in base64 and in hex, next to where an excerpt is cut."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from conftest import EXECUTABLE, CliResult, write_project
from servers import FakeServer, OpenAI, Reply, Request
from typer.testing import CliRunner

from cxrun.cli import app

pytest_plugins = ["servers"]

CANARY = "CANARY-7f3a9b"  # the provider key, the webhook secret and a webhook header
SPACED = "SPACED  7f3a9b"  # a key with two spaces, which collapsing whitespace would change
SECRETS = (CANARY, SPACED)
CUT = 200  # where excerpts of answers were cut, before their secrets were scrubbed

CASES = "id,kind\n1,answer\n2,not-json\n3,error\n4,paused\n"
STEPS = {
    "ask": {"ai": {"provider": "llm", "model": "m", "prompt": "{{ kind }}", "output": "said"}},
    "spaced": {"ai": {"provider": "spaced", "model": "m", "prompt": "{{ kind }}", "output": "s"}},
    "hook": {"send": {"channel": "hook", "to": "x@example.org", "text": "{{ kind }}"}},
}


# ---- what the server echoes, and what must never come back ---------------------------------


def b64(data: bytes, urlsafe: bool = False) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()


def echoes(value: str) -> str:
    """The value in every form a server may quote it: as is, spaces doubled or turned into a
    line break, base64 alone and inside longer base64 texts at each alignment (an echoed
    `Authorization: Basic base64(user:value)`, a whole header line), and hex."""
    data = value.encode()
    forms = [
        value,
        value.replace(" ", "  "),
        value.replace(" ", "\n \t"),
        b64(data),
        b64(data, urlsafe=True).rstrip("="),
        *(f"Basic {b64(f'{user}:{value}'.encode())}" for user in ("", "a", "ab")),
        *(b64(f"{prefix}Bearer {value}\r\n".encode()) for prefix in ("", "x", "xy")),
        data.hex(),
        data.hex().upper(),
    ]
    return " ".join(f"<{form}>" for form in forms)


def straddling(value: str, cut: int, length: int = 600) -> str:
    """A text with `value` starting 10 characters before `cut` (a cut there keeps 10 of its
    characters), then every echoed form, padded to `length` characters."""
    head = "x" * (cut - 10) + value + " "
    text = head + echoes(value) + " "
    return text + "y" * max(0, length - len(text))


def bits(value: str) -> list[str]:
    """The strings that hold the value's characters: the value, its whitespace-collapsed
    spelling, its hex, and the base64 characters that encode only its bytes, at the three
    alignments a longer base64 text may put them."""
    data = value.encode()
    found = [value, " ".join(value.split()), data.hex(), data.hex().upper()]
    for shift in range(3):
        encoded = b64(bytes(shift) + data)
        start, stop = -(-8 * shift // 6), 8 * (shift + len(data)) // 6
        found += [encoded[start:stop], encoded.translate(str.maketrans("+/", "-_"))[start:stop]]
    return found


def leaks(text: str) -> list[str]:
    """Every piece of 8 characters or more of a secret's bits that the text holds."""
    return sorted(
        {
            form[i : i + 8]
            for value in SECRETS
            for form in bits(value)
            for i in range(len(form) - 7)
            if form[i : i + 8] in text
        }
    )


def key_of(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


def llm_server(request: Request) -> Reply:
    """Chat completions that echo the key: in the answer (`answer`), in a 2xx answer that is
    not JSON (`not-json`), in a 500 text body (`error`), in the 401 that pauses (`paused`)."""
    if request.path.endswith("/hook"):
        return hook_server(request)
    kind, key = request.json()["messages"][-1]["content"], key_of(request)
    if kind == "answer":
        return OpenAI.answer(straddling(key, CUT))
    if kind == "not-json":  # the answer's body is quoted after "llm (openai): ... not JSON: "
        return Reply(200, straddling(key, CUT))
    if kind == "error":
        return Reply(500, straddling(key, CUT, 900))
    return Reply(401, {"error": {"message": f"bad key: {echoes(key)}"}})


def hook_server(request: Request) -> Reply:
    """A receiver that quotes the X-Token header: as the receipt id of a send it accepts, and
    in the 500 text body of one it refuses."""
    token = request.headers.get("x-token", "")
    if request.json()["text"] == "answer":
        return Reply(200, {"id": straddling(token, CUT)})
    return Reply(500, straddling(token, CUT, 900))


# ---- the project, and every place a secret could end up ------------------------------------


def project(tmp_path: Path, server: FakeServer) -> Path:
    spinners = {
        name: yaml.safe_dump(
            {"table": "cases", "key": "id", "steps": [{"id": name, **step, "retry": retry}]}
        )
        for name, step in STEPS.items()
        for retry in [{"attempts": 2, "backoff": "10ms"}]
    }
    root = write_project(tmp_path / "proj", spinners=spinners, tables={"cases": CASES})
    llm = {"kind": "openai", "base_url": f"{server.url}/v1"}
    hook = {"kind": "webhook", "url": f"{server.url}/hook", "secret": "secret:HOOK_SECRET"}
    config = {
        "name": "t",
        "providers": {
            "llm": {**llm, "api_key": "secret:LLM_KEY"},
            "spaced": {**llm, "api_key": "secret:SPACED_KEY"},
        },
        "channels": {"hook": {**hook, "headers": {"X-Token": "secret:HOOK_TOKEN"}}},
    }
    (root / "cxrun.yaml").write_text(yaml.safe_dump(config))
    return root


def stored_text(state_dir: Path) -> dict[str, str]:
    """Every value of every table of the state file as text (VARCHAR and JSON columns, and
    lists and structs that may hold strings), by table; read once no cxrun process has it."""
    found: dict[str, str] = {}
    with duckdb.connect(str(state_dir / "state.duckdb"), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal"
        ).fetchall()
        for table, column in columns:
            rows = con.execute(f'SELECT "{column}"::VARCHAR FROM "{table}"').fetchall()
            found[table] = found.get(table, "") + "\n".join(str(v) for (v,) in rows)
    return found


def cxrun(root: Path, *args: str, input: str | None = None, **env: str) -> CliResult:
    """The installed executable in a subprocess, as the `run` fixture runs it (which a fixture
    shared by the module's tests cannot ask for)."""
    environment = {k: v for k, v in os.environ.items() if k != "CXRUN_PROJECT"} | env
    done = subprocess.run(
        [str(EXECUTABLE), *args],
        cwd=root,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def listed(root: Path, *args: str) -> CliResult:
    """A listing command run in this process (the Typer app, as the `cli` fixture runs it)."""
    result = CliRunner().invoke(app, [*args, "--project", str(root)])
    return CliResult(result.exit_code, result.stdout, result.stderr)


JOBS = {1: "123", 2: "123", 3: "123", 4: "14"}  # each job's records


def outputs(root: Path) -> dict[str, CliResult]:
    """`jobs`, `records` and `journey`, with --json and without."""
    commands = [["jobs"]] + [["records", str(job)] for job in JOBS]
    commands += [
        ["journey", str(job), record] for job, records in JOBS.items() for record in records
    ]
    seen = {}
    for command in commands:
        for flags in (["--json"], []):
            seen[" ".join([*command, *flags])] = listed(root, *command, *flags)
    return seen


Ran = tuple[Path, dict[str, CliResult]]  # the project, and what each command printed


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """The project run: job 1 asks with the canary key, job 2 with the spaced key, job 3 sends
    through the webhook, job 4 pauses on a 401 quoting the key; then every listing."""
    tmp_path = tmp_path_factory.mktemp("scrubbing")
    with FakeServer(llm_server) as server:
        root = project(tmp_path, server)
        env = {"LLM_KEY": CANARY, "HOOK_TOKEN": CANARY, "SPACED_KEY": SPACED}
        seen = {"set": cxrun(root, "secrets", "set", "HOOK_SECRET", input=CANARY)}
        seen["publish"] = cxrun(root, "publish", **env)
        for name in ("ask", "spaced", "hook"):
            seen[name] = cxrun(root, "run-now", name, "--where", "kind <> 'paused'", **env)
        paused = "kind IN ('answer', 'paused')"  # one call is answered, kept in the spool
        seen["paused"] = cxrun(root, "run-now", "ask", "--where", paused, **env)
        sent = [key_of(r) for r in server.requests if "authorization" in r.headers]
        tokens = [r.headers["x-token"] for r in server.requests if "x-token" in r.headers]
    codes = {name: result.code for name, result in seen.items()}
    assert codes == {"set": 0, "publish": 0, "ask": 3, "spaced": 3, "hook": 3, "paused": 6}
    assert set(sent) == {CANARY, SPACED} and set(tokens) == {CANARY}  # they were sent...
    yield root, {**seen, **outputs(root)}


def journey(seen: dict[str, CliResult], job: int, record: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(seen[f"journey {job} {record} --json"].stdout)
    return entries


# ---- the tests -----------------------------------------------------------------------------


def test_an_answer_quoting_the_key_by_the_cut_keeps_no_piece_of_it(ran: Ran) -> None:
    _, seen = ran
    for job in (1, 2):  # the canary key, and the key with two spaces
        (entry,) = journey(seen, job, "1")
        assert entry["status"] == "completed"
        assert entry["message"].startswith("x" * (CUT - 10) + "***")  # ...and came back
        assert entry["message"].endswith("…") and len(entry["message"]) == CUT
        assert leaks(json.dumps(entry)) == [], entry


def test_a_body_that_is_not_json_keeps_no_piece_of_the_key(ran: Ran) -> None:
    _, seen = ran
    for job in (1, 2):
        errors = [entry["error"] for entry in journey(seen, job, "2")]
        assert errors and all("the answer is not JSON: " + "x" * 190 in e for e in errors)
        assert leaks(json.dumps(errors)) == [], errors
        records = json.loads(seen[f"records {job} --json"].stdout)
        assert leaks(json.dumps(records)) == []


def test_a_long_500_body_keeps_no_piece_of_the_key_or_token(ran: Ran) -> None:
    _, seen = ran
    for job in (1, 2, 3):
        entries = journey(seen, job, "3")
        assert entries[-1]["status"] == "failed"
        assert "HTTP 500: " + "x" * 190 + "***" in entries[-1]["error"], entries
        assert leaks(json.dumps(entries)) == [], entries


def test_a_receipt_quoting_the_token_is_stored_scrubbed(ran: Ran) -> None:
    _, seen = ran
    (entry,) = journey(seen, 3, "1")
    assert entry["status"] == "completed" and "***" in json.dumps(entry["output"])
    assert leaks(json.dumps(entry)) == [], entry


def test_the_pause_reason_keeps_no_form_of_the_key(ran: Ran) -> None:
    _, seen = ran
    (job,) = [j for j in json.loads(seen["jobs --json"].stdout) if j["job"] == 4]
    assert job["status"] == "paused" and "bad key: <***>" in job["reason"], job
    assert leaks(job["reason"]) == [], job["reason"]


def test_no_output_spool_or_state_holds_any_form_or_piece_of_a_secret(ran: Ran) -> None:
    root, seen = ran
    for name, result in seen.items():
        assert leaks(result.stdout + result.stderr) == [], name
    state_dir = root / ".cxrun"
    spooled = [path for path in (state_dir / "spool").rglob("*") if path.is_file()]
    assert any(p.stat().st_size for p in spooled), "the paused job keeps its calls spooled"
    for path in spooled:
        assert leaks(path.read_text()) == [], path
    stored = stored_text(state_dir)
    assert {"cx_records", "cx_journey"} <= set(stored)
    assert "***" in stored["cx_journey"]
    for table, text in stored.items():
        assert leaks(text) == [], table
    for path in state_dir.rglob("*"):  # the raw bytes too, the secrets file aside
        if path.is_file() and path.name != "secrets.json":
            raw = path.read_bytes().decode("latin-1")
            assert not any(value in raw for value in SECRETS), path


def test_secrets_set_refuses_a_value_under_8_characters(tmp_path: Path, run: Any) -> None:
    root = write_project(tmp_path / "proj")
    for value in ("abc1234", "ab 12 cd 3 \t"):  # 7 characters once spaces are left out
        result = run(root, "secrets", "set", "SHORT_KEY", input=value)
        assert result.code == 2, result
        assert "SHORT_KEY" in result.stderr and "at least 8" in result.stderr, result
        assert value.strip() not in result.stdout + result.stderr
    assert not (root / ".cxrun" / "secrets.json").exists()
    assert run(root, "secrets", "set", "LONG_KEY", input="abcd1234").code == 0
    stored = json.loads((root / ".cxrun" / "secrets.json").read_text())
    assert stored == {"LONG_KEY": "abcd1234"}


def test_a_short_secret_from_the_environment_refuses_the_run(tmp_path: Path, run: Any) -> None:
    with FakeServer(llm_server) as server:
        root = project(tmp_path, server)
        env = {"LLM_KEY": "a", "HOOK_TOKEN": CANARY, "SPACED_KEY": SPACED, "HOOK_SECRET": CANARY}
        assert run(root, "publish", env=env).code == 0  # publish checks a secret is set

        result = run(root, "run-now", "ask", env=env)

        assert result.code == 2, result
        assert "LLM_KEY" in result.stderr and "environment variable" in result.stderr
        assert "at least 8" in result.stderr
        assert server.requests == []  # the key was never sent, so it has nothing to scrub
    assert json.loads(run(root, "jobs", "--json").stdout) == []
