"""Finding a project folder and reading its cxrun.yaml."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cxrun import __version__
from cxrun.base import notify
from cxrun.base.durations import DURATION_PATTERN, seconds
from cxrun.base.errors import CxrunError, NotFound
from cxrun.base.yamlfile import parse_yaml, read_text

CONFIG_FILE = "cxrun.yaml"
CHECKED_FILE = "config.checked"  # in .cxrun/: the fingerprint of a cxrun.yaml that passed
AGING = "10m"  # runtime.aging: each full period a queued job waits lifts it one priority level

_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "providers": {"type": "object", "additionalProperties": {"type": "object"}},
        "channels": {"type": "object", "additionalProperties": {"type": "object"}},
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "jobs_per_month": {"type": "integer", "minimum": 0},
                "records_per_month": {"type": "integer", "minimum": 0},
            },
        },
        "notify": notify.SCHEMA,
        "serve": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "public_url": {"type": "string", "pattern": "^https?://[^\\s]+$"},
            },
        },
        "runtime": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "aging": {"type": "string", "pattern": DURATION_PATTERN},
            },
        },
        "executor": {
            "type": "object",
            "additionalProperties": False,
            "required": ["kind"],
            "properties": {
                "kind": {"enum": ["local", "dask"]},
                "address": {"type": "string", "pattern": "^(tcp|tls|ucx|inproc)://\\S+$"},
            },
            "if": {"properties": {"kind": {"const": "dask"}}},
            "then": {"required": ["address"]},
        },
    },
}


class Project:
    """A project folder. Its cxrun.yaml is read and checked the first time it is needed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @cached_property
    def _config(self) -> Config:
        return read_config(self.root, self.state_dir / CHECKED_FILE)

    @property
    def config(self) -> Mapping[str, Any]:
        return self._config.values

    @property
    def config_checked(self) -> bool:
        """Whether this very cxrun.yaml passed every check before, its providers' and
        channels' options included: they need not be checked again."""
        return self._config.checked

    def mark_config_checked(self) -> None:
        """Remember that this cxrun.yaml passed every check (until it changes)."""
        from cxrun.base.secrets import write_private

        if not self._config.checked:
            with contextlib.suppress(OSError):  # only a shortcut: a read-only folder goes without
                write_private(self.state_dir / CHECKED_FILE, self._config.fingerprint.encode())

    @property
    def name(self) -> str:
        return str(self.config["name"])

    @property
    def providers(self) -> Mapping[str, Mapping[str, Any]]:
        return self.config.get("providers") or {}

    @property
    def channels(self) -> Mapping[str, Mapping[str, Any]]:
        return self.config.get("channels") or {}

    @property
    def limits(self) -> Mapping[str, int]:
        return self.config.get("limits") or {}

    @property
    def alert_rules(self) -> list[notify.Rule]:
        """The project's `notify:` rules (a spinner's own add to them)."""
        return notify.rules(self.config.get("notify"))

    @property
    def public_url(self) -> str | None:
        """Where `cxrun serve` is reached from outside (`serve: {public_url}`), if configured."""
        url = (self.config.get("serve") or {}).get("public_url")
        return str(url).rstrip("/") if url else None

    @property
    def aging(self) -> float:
        """Seconds a queued job waits before it moves up one priority level (runtime.aging)."""
        return seconds((self.config.get("runtime") or {}).get("aging", AGING))

    @property
    def cluster_address(self) -> str | None:
        """The Dask scheduler a runtime hands its I/O calls to (`executor: {kind: dask}`)."""
        executor = self.config.get("executor") or {}
        return str(executor["address"]) if executor.get("kind") == "dask" else None

    @property
    def state_dir(self) -> Path:
        return self.root / ".cxrun"

    @property
    def spinners_dir(self) -> Path:
        return self.root / "spinners"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    def shown(self, path: Path) -> str:
        """A path as the user should see it: relative to the project root."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def find_root(override: str | None = None, start: Path | None = None) -> Path:
    """The project: --project, then CXRUN_PROJECT, then the first folder upward with cxrun.yaml."""
    chosen = override or os.environ.get("CXRUN_PROJECT")
    if chosen:
        root = Path(chosen).expanduser().resolve()
        if not (root / CONFIG_FILE).is_file():
            raise NotFound(
                f"no {CONFIG_FILE} in {chosen}",
                "point --project (or CXRUN_PROJECT) at a project folder, or run `cxrun init DIR`",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise NotFound(
        f"no {CONFIG_FILE} found in {here} or any folder above it",
        "run `cxrun init` to create a project here, or pass --project DIR",
    )


def load_project(override: str | None = None, start: Path | None = None) -> Project:
    return Project(find_root(override, start))


@dataclass(frozen=True)
class Config:
    values: dict[str, Any]
    fingerprint: str  # of the file's text and the cxrun version that checked it
    checked: bool  # every check passed before (.cxrun/config.checked holds the fingerprint)


def read_config(root: Path, checked_file: Path) -> Config:
    """cxrun.yaml, checked against its schema unless `checked_file` holds the fingerprint of this
    very text (the checks import jsonschema, a noticeable part of a short command's time)."""
    text = read_text(root / CONFIG_FILE, CONFIG_FILE)
    raw = parse_yaml(text, CONFIG_FILE) or {}
    fingerprint = f"{__version__} {hashlib.sha256(text.encode()).hexdigest()}"
    try:
        checked = checked_file.read_text() == fingerprint
    except (OSError, UnicodeDecodeError):
        checked = False
    if not checked:
        _check_config(raw)
    return Config(raw, fingerprint, checked)


def _check_config(raw: Any) -> None:
    import jsonschema

    errors = sorted(
        jsonschema.Draft202012Validator(_CONFIG_SCHEMA).iter_errors(raw), key=lambda e: list(e.path)
    )
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path)
        raise CxrunError(
            f"{CONFIG_FILE}: {where + ': ' if where else ''}{errors[0].message}",
            f"fix {CONFIG_FILE} and try again",
        )
    rules = notify.rules(raw.get("notify"))
    found = notify.problems(rules, raw.get("channels") or {}, f"{CONFIG_FILE}: notify")
    if found:
        raise CxrunError(found[0], f"fix {CONFIG_FILE} and try again")
    _check_aging((raw.get("runtime") or {}).get("aging", AGING))


def _check_aging(text: str) -> None:
    """runtime.aging: a duration from one second to 100 years."""
    try:
        problem = None if seconds(text) >= 1 else f"{text!r} is shorter than 1s"
    except ValueError as exc:
        problem = str(exc)
    if problem:
        raise CxrunError(f"{CONFIG_FILE}: runtime.aging: {problem}", f"fix {CONFIG_FILE}")
