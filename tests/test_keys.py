"""API keys for `cxrun serve`: created with the installed `cxrun` (the key shown once, never
listed, never stored), then authenticated, limited by scope and spinner, and revoked; bad input
exits 2 and leaves the keys as they were; migration 9 adds the table to an older state."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import CliResult

from cxrun.base.errors import CxrunError, NotFound, StateBusy, StateDamaged
from cxrun.ops import Context, keys, open_context, publishing
from cxrun.store import State
from cxrun.store.lock import StateLock
from cxrun.store.schema import LATEST, MIGRATIONS

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
KEY = re.compile(r"cxr_[A-Za-z0-9_-]{43}")
STATE = ".cxrun/state.duckdb"
LISTED = {"name", "scopes", "spinners", "created_at", "last_used_at", "revoked_at"}


def rows(root: Path) -> list[tuple[Any, ...]]:
    """The keys table, read straight from the state file (no cxrun process is running)."""
    con = duckdb.connect(str(root / STATE), read_only=True)
    try:
        return con.execute("SELECT * FROM cx_api_keys ORDER BY name").fetchall()
    finally:
        con.close()


def files_holding(root: Path, data: str) -> list[str]:
    """The files under .cxrun/ (state, write-ahead log, lock, anything) whose bytes hold `data`."""
    found = []
    for path in sorted((root / ".cxrun").rglob("*")):
        if path.is_file() and data.encode() in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


def make_key(ctx: Context, name: str = "ci", **options: Any) -> tuple[keys.ApiKey, str]:
    options.setdefault("scopes", ["read"])
    return keys.create(ctx, name, now=T0, **options)


def other_key(plain: str) -> str:
    """`plain` with its last character changed."""
    return plain[:-1] + ("A" if plain[-1] != "A" else "B")


# ---- the command line, in a subprocess ----------------------------------------------------


def test_the_key_is_printed_once_never_listed_and_never_stored(project: Path, run) -> None:
    made = run(project, "keys", "create", "ci", "--scope", "trigger", "--spinner", "welcome")
    assert made.code == 0, made
    plain = made.stdout.strip()
    assert KEY.fullmatch(plain) and made.stdout == plain + "\n"
    assert "not shown again" in made.stderr and plain not in made.stderr
    as_json = run(
        project, "keys", "create", "ops", "--scope", "read", "--scope", "control", "--json"
    )
    assert as_json.code == 0, as_json
    shown = json.loads(as_json.stdout)
    assert set(shown) == {"name", "key", "scopes", "spinners", "created_at"}
    assert (shown["name"], shown["scopes"], shown["spinners"]) == ("ops", ["control", "read"], [])
    second = shown["key"]
    assert KEY.fullmatch(second) and second != plain and "not shown again" in as_json.stderr
    later = [
        run(project, "keys", "list"),
        run(project, "keys", "list", "--json"),
        run(project, "keys", "revoke", "ops"),
        run(project, "keys", "list", "--json"),
    ]
    for done in later:
        assert done.code == 0, done
        for key in (plain, second):
            assert key[12:] not in done.stdout + done.stderr
    table = later[0].stdout
    assert "ci" in table and "trigger" in table and "welcome" in table and "never" in table
    listed = {k["name"]: k for k in json.loads(later[3].stdout)}
    assert listed["ci"]["revoked_at"] is None and listed["ops"]["revoked_at"] is not None
    assert set(listed["ci"]) == LISTED
    ctx = open_context(str(project))
    assert keys.authenticate(ctx, plain).name == "ci"
    assert keys.authenticate(ctx, second) is None  # revoked by the command above
    for key in (plain, second):
        assert files_holding(project, key) == []
        assert files_holding(project, key[12:]) == []  # not even the part after the lookup
    # The scan sees what is stored: the hash of the key is there, as it should be.
    assert STATE in files_holding(project, hashlib.sha256(plain.encode()).hexdigest())


@pytest.fixture
def with_keys(project: Path) -> Path:
    """The project with a live key `ci` and a revoked key `old`."""
    ctx = open_context(str(project))
    make_key(ctx, "ci")
    make_key(ctx, "old")
    keys.revoke(ctx, "old", now=T0)
    return project


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("create", "bad name", "--scope", "read"), ["bad key name 'bad name'", "letters, digits"]),
        (("create", ".hidden", "--scope", "read"), ["bad key name '.hidden'"]),
        (("create", "x" * 65, "--scope", "read"), ["bad key name 'xxxx", "1 to 64"]),
        (("create", "new"), ["needs at least one scope", "trigger, read, control"]),
        (
            ("create", "new", "--scope", "admin"),
            ["unknown scope 'admin'", "trigger, read, control"],
        ),
        (
            ("create", "new", "--scope", "trigger", "--spinner", "nope", "--json"),
            ["unknown spinner 'nope' (spinners: welcome)"],
        ),
        (("create", "ci", "--scope", "read"), ["key named 'ci' exists already", "another name"]),
        (("create", "old", "--scope", "read"), ["'old' exists already (revoked)", "another name"]),
        (("revoke", "nobody"), ["no API key named 'nobody'", "`cxrun keys list`"]),
        (("revoke", "old", "--json"), ["'old' was revoked already, at 2026-11-22T09:00:00Z"]),
    ],
)
def test_bad_input_exits_2_with_a_short_message_and_changes_no_key(
    with_keys: Path, run, args: tuple[str, ...], says: list[str]
) -> None:
    before = rows(with_keys)
    done: CliResult = run(with_keys, "keys", *args)
    assert done.code == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for fragment in says:
        assert fragment in done.stderr
    assert rows(with_keys) == before


# ---- authenticate --------------------------------------------------------------------------


def test_authenticate_accepts_the_key_and_refuses_anything_else(project: Path) -> None:
    ctx = open_context(str(project))
    key, plain = make_key(ctx)
    _, unrelated = make_key(ctx, "other")
    keys.revoke(ctx, "other")
    assert keys.authenticate(ctx, plain) == keys.listing(ctx)[0]
    assert key.name == keys.authenticate(ctx, plain).name
    refused = [
        other_key(plain),  # the last character changed
        plain[:12] + secrets.token_urlsafe(32),  # the right lookup, the rest wrong
        "cxr_" + secrets.token_urlsafe(32),  # well formed, unknown
        unrelated,  # revoked
        "",
        "cxr_",
        plain[4:],  # without its prefix
        plain + "A",
        plain[:-1],
        " " + plain,
        plain + "\n",
        plain[:-1] + "é",
        "x" * 100_000,
        hashlib.sha256(plain.encode()).hexdigest(),  # the stored hash is no key
    ]
    assert [keys.authenticate(ctx, text) for text in refused] == [None] * len(refused)


def test_a_revoked_key_is_refused_at_once(project: Path) -> None:
    ctx = open_context(str(project))
    _, plain = make_key(ctx)
    assert keys.authenticate(ctx, plain, now=T0) is not None
    revoked = keys.revoke(ctx, "ci", now=T0 + timedelta(seconds=1))
    assert revoked.revoked_at == T0 + timedelta(seconds=1)
    assert keys.authenticate(ctx, plain, now=T0 + timedelta(seconds=2)) is None  # within the minute
    assert keys.authenticate(ctx, plain, now=T0 + timedelta(hours=1)) is None
    assert not revoked.allows("read")


def test_last_used_is_written_at_most_once_a_minute(project: Path, monkeypatch) -> None:
    ctx = open_context(str(project))
    _, plain = make_key(ctx)
    assert keys.listing(ctx)[0].last_used_at is None
    writes = []
    write = ctx.state.write
    monkeypatch.setattr(ctx.state, "write", lambda *a, **k: writes.append(1) or write(*a, **k))
    first = T0 + timedelta(hours=1)
    assert keys.authenticate(ctx, plain, now=first).last_used_at == first
    assert len(writes) == 1
    for seconds in (1, 30, 59.999):
        found = keys.authenticate(ctx, plain, now=first + timedelta(seconds=seconds))
        assert found is not None and found.last_used_at == first
    assert keys.authenticate(ctx, plain, now=first - timedelta(hours=1)).last_used_at == first
    assert len(writes) == 1 and keys.listing(ctx)[0].last_used_at == first
    then = first + timedelta(minutes=1)
    assert keys.authenticate(ctx, plain, now=then).last_used_at == then
    assert len(writes) == 2 and keys.listing(ctx)[0].last_used_at == then


def test_within_the_minute_authenticate_takes_only_the_shared_lock(project: Path) -> None:
    ctx = open_context(str(project))
    _, plain = make_key(ctx)
    assert keys.authenticate(ctx, plain, now=T0) is not None
    impatient = Context(ctx.project, State(ctx.state.dir, lock_timeout=0.2))
    reader = StateLock(ctx.state.dir / "state.lock", timeout=1)
    with reader.hold(exclusive=False):  # another process reading: no write can start
        assert keys.authenticate(impatient, plain, now=T0 + timedelta(seconds=30)) is not None
        with pytest.raises(StateBusy):  # a minute on, it must write last_used_at
            keys.authenticate(impatient, plain, now=T0 + timedelta(minutes=2))


# ---- scopes, spinners, the shape -----------------------------------------------------------


def test_scopes_and_spinners_are_enforced_by_allows(project: Path) -> None:
    ctx = open_context(str(project))
    publishing.publish(ctx, None)
    (project / "spinners" / "welcome.yaml").rename(project / "spinners" / "old.yaml.bak")
    (project / "spinners" / "draft.yaml").write_text("name: draft\n")  # a file, not published
    limited, _ = make_key(ctx, "hook", scopes=["trigger", "read"], spinners=["welcome", "draft"])
    assert limited.spinners == ("draft", "welcome")  # a published spinner without its file, too
    assert limited.allows("trigger", "welcome") and limited.allows("trigger", "draft")
    assert not limited.allows("trigger", "other") and not limited.allows("trigger")
    assert limited.allows("read") and limited.allows("read", "other")
    assert not limited.allows("control") and not limited.allows("admin")
    anyone, _ = make_key(ctx, "ops", scopes=["trigger", "control", "control"])
    assert anyone.scopes == frozenset({"trigger", "control"}) and anyone.spinners == ()
    assert anyone.allows("trigger", "whatever") and anyone.allows("trigger")
    assert anyone.allows("control", "other") and not anyone.allows("read")
    reader, _ = make_key(ctx, "dash", scopes="read")
    assert reader.scopes == frozenset({"read"})


def test_to_json_shows_what_a_key_may_do_and_never_the_key(project: Path) -> None:
    ctx = open_context(str(project))
    key, plain = make_key(ctx, "ci", scopes=["trigger", "control"], spinners=["welcome"])
    shown = key.to_json()
    assert shown == {
        "name": "ci",
        "scopes": ["control", "trigger"],
        "spinners": ["welcome"],
        "created_at": "2026-11-22T09:00:00Z",
        "last_used_at": None,
        "revoked_at": None,
    }
    text = json.dumps([k.to_json() for k in keys.listing(ctx)]) + repr(keys.listing(ctx))
    assert plain[:12] not in text and hashlib.sha256(plain.encode()).hexdigest() not in text


def test_listing_is_by_name(project: Path) -> None:
    ctx = open_context(str(project))
    for name in ("web", "ci", "backup.1", "Zed"):
        make_key(ctx, name)
    assert [k.name for k in keys.listing(ctx)] == ["Zed", "backup.1", "ci", "web"]


def test_a_name_may_be_64_characters(project: Path) -> None:
    ctx = open_context(str(project))
    name = "a" + "b_.-9" * 12 + "abc"
    assert len(name) == 64 and make_key(ctx, name)[0].name == name
    for bad in ("", "-x", "a b", "a/b", "a\n", "é"):
        with pytest.raises(CxrunError, match="bad key name"):
            make_key(ctx, bad)


def test_revoking_an_unknown_key_is_not_found(project: Path) -> None:
    with pytest.raises(NotFound) as raised:
        keys.revoke(open_context(str(project)), "nobody")
    assert raised.value.exit_code == 2 and "cxrun keys list" in (raised.value.hint or "")


# ---- migration 9 ---------------------------------------------------------------------------


def test_a_state_from_before_keys_gains_an_empty_keys_table(tmp_path: Path) -> None:
    path = tmp_path / ".cxrun" / "state.duckdb"
    path.parent.mkdir()
    con = duckdb.connect(str(path))
    for sql in MIGRATIONS[:8]:
        con.execute(sql)
    con.execute("INSERT INTO cx_meta VALUES ('schema_version', '8')")
    con.execute("INSERT INTO cx_selections VALUES (1, 0, 0)")
    con.close()
    state = State(tmp_path / ".cxrun")
    with state.read() as con:
        assert con.execute("SELECT count(*) FROM cx_api_keys").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM cx_selections").fetchone() == (1,)
        version = con.execute("SELECT value FROM cx_meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(LATEST),)


def test_a_state_without_its_keys_table_is_damaged(project: Path) -> None:
    make_key(open_context(str(project)))
    con = duckdb.connect(str(project / STATE))
    con.execute("DROP TABLE cx_api_keys")
    con.close()
    with pytest.raises(StateDamaged, match="table cx_api_keys is missing"):
        keys.listing(open_context(str(project)))
