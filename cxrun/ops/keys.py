"""API keys for `cxrun serve`: creating one (its plain key shown once), listing and revoking
them, and telling whether a presented key is a live one and what its scopes allow."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import utcnow
from cxrun.base.errors import CxrunError, NotFound
from cxrun.base.models import iso
from cxrun.spec.loader import spinner_names
from cxrun.store import keys as key_store
from cxrun.store import spinners as spinner_store
from cxrun.store.context import Context
from cxrun.store.keys import StoredKey

if TYPE_CHECKING:
    import duckdb

SCOPES = ("trigger", "read", "control")
PREFIX = "cxr_"  # a fixed prefix, so that secret scanners can spot a leaked key
LOOKUP_CHARS = 12  # the first characters of a key, stored to find its row
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEY = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32): 43 characters


@dataclass(frozen=True)
class ApiKey:
    """A key as the API and the CLI see it: never the key itself, its hash or its lookup."""

    name: str
    scopes: frozenset[str]
    spinners: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scopes": sorted(self.scopes),
            "spinners": list(self.spinners),
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
        }

    def allows(self, scope: str, spinner: str | None = None) -> bool:
        """Whether this key may do what `scope` covers. A key limited to some spinners triggers
        only those (so nothing when no spinner is named); a revoked key allows nothing."""
        if self.revoked_at is not None or scope not in self.scopes:
            return False
        return scope != "trigger" or not self.spinners or spinner in self.spinners


def create(
    ctx: Context,
    name: str,
    scopes: Iterable[str],
    spinners: Iterable[str] = (),
    now: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key named `name`, and its plain key: returned here once, stored only hashed."""
    _check_name(name)
    wanted, limited = _scopes(scopes), tuple(sorted(set(spinners)))
    with ctx.state.write() as con:
        _check_spinners(limited, spinner_names(ctx.project) | spinner_store.names(con))
        _check_free(con, name)
        plain = _new_key(con)
        stored = StoredKey(
            name, plain[:LOOKUP_CHARS], _digest(plain), wanted, limited, now or utcnow(), None, None
        )
        key_store.insert(con, stored)
    return _api_key(stored), plain


def listing(ctx: Context) -> list[ApiKey]:
    """Every key, live or revoked, by name."""
    with ctx.state.read() as con:
        return [_api_key(stored) for stored in key_store.listing(con)]


def revoke(ctx: Context, name: str, now: datetime | None = None) -> ApiKey:
    """Revoke a key: from now on every request with it is refused."""
    with ctx.state.write() as con:
        found = _named(con, name)
        if found.revoked_at is not None:
            raise CxrunError(
                f"key {_shown(name)} was revoked already, at {iso(found.revoked_at)}",
                "see the live keys with `cxrun keys list`",
            )
        key_store.revoke(con, name, now or utcnow())
        revoked = _named(con, name)
    return _api_key(revoked)


def authenticate(ctx: Context, presented: str, now: datetime | None = None) -> ApiKey | None:
    """The live key `presented` is, or None (malformed, unknown, wrong or revoked).

    Only the sha256 digests are compared, in constant time. last_used_at is written at most once
    a minute per key: most calls only read the state, under the shared lock."""
    if not isinstance(presented, str) or not _KEY.fullmatch(presented):
        return None
    digest = _digest(presented)
    with ctx.state.read() as con:
        found = _matching(key_store.by_lookup(con, presented[:LOOKUP_CHARS]), digest)
    if found is None or found.revoked_at is not None:
        return None
    when = now or utcnow()
    if found.last_used_at is not None and when - found.last_used_at < TOUCH_EVERY:
        return _api_key(found)
    return _touch(ctx, found.name, when)


def _touch(ctx: Context, name: str, when: datetime) -> ApiKey | None:
    """Mark the key used at `when` (unless another request just did); None if it was revoked
    since it was read."""
    with ctx.state.write() as con:
        key_store.touch(con, name, when, when - TOUCH_EVERY)
        found = key_store.get(con, name)
    return _api_key(found) if found is not None and found.revoked_at is None else None


def _matching(rows: list[StoredKey], digest: str) -> StoredKey | None:
    """The row whose hash is `digest`; every row with the lookup is compared, in constant time."""
    match = None
    for row in rows:
        if hmac.compare_digest(row.hash, digest):
            match = row
    return match


def _digest(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def _new_key(con: duckdb.DuckDBPyConnection) -> str:
    """A plain key whose lookup no other key has (48 random bits: a clash is all but never)."""
    while True:
        plain = PREFIX + secrets.token_urlsafe(32)
        if not key_store.by_lookup(con, plain[:LOOKUP_CHARS]):
            return plain


def _api_key(stored: StoredKey) -> ApiKey:
    return ApiKey(
        stored.name,
        frozenset(stored.scopes),
        stored.spinners,
        stored.created_at,
        stored.last_used_at,
        stored.revoked_at,
    )


def _shown(text: str) -> str:
    """A name as an error quotes it: escaped, and cut when it is long."""
    return repr(text if len(text) <= 64 else text[:64] + "…")


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise CxrunError(
            f"bad key name {_shown(name)}",
            "use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or a digit",
        )


def _scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes asked for, checked, once each and sorted."""
    wanted = sorted({scopes} if isinstance(scopes, str) else set(scopes))
    known = ", ".join(SCOPES)
    if not wanted:
        raise CxrunError("an API key needs at least one scope", f"give one or more of: {known}")
    for scope in wanted:
        if scope not in SCOPES:
            raise CxrunError(f"unknown scope {_shown(scope)}", f"the scopes are: {known}")
    return tuple(wanted)


def _check_spinners(limited: tuple[str, ...], known: set[str]) -> None:
    for spinner in limited:
        if spinner not in known:
            names = ", ".join(sorted(known)) or "none yet"
            raise NotFound(
                f"unknown spinner {_shown(spinner)} (spinners: {names})",
                "name a spinner of spinners/ or a published one",
            )


def _check_free(con: duckdb.DuckDBPyConnection, name: str) -> None:
    found = key_store.get(con, name)
    if found is not None:
        revoked = " (revoked)" if found.revoked_at is not None else ""
        raise CxrunError(f"a key named {_shown(name)} exists already{revoked}", "pick another name")


def _named(con: duckdb.DuckDBPyConnection, name: str) -> StoredKey:
    found = key_store.get(con, name)
    if found is None:
        raise NotFound(f"no API key named {_shown(name)}", "see the keys with `cxrun keys list`")
    return found
