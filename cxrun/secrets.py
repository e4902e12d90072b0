"""Local secrets: naming, resolving `secret:NAME`, the 0600 secrets file, and redaction."""

from __future__ import annotations

import getpass
import json
import os
import re
import stat
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

from cxrun.errors import CxrunError

SECRETS_FILE = "secrets.json"
PREFIX = "secret:"
MASK = "***"
# Values shorter than this are never redacted: scrubbing "a" or "on" would mangle ordinary text.
MIN_REDACT_LENGTH = 4

_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_FOLDER_MODE = 0o700
_FILE_MODE = 0o600


class MissingSecret(CxrunError):
    """A `secret:NAME` reference whose secret is set neither in the environment nor the file."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name} is not set: run `cxrun secrets set {name}` "
            f"or set the environment variable {name}"
        )
        self.name = name


def is_valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check_name(name: str) -> str:
    """The name itself, or CxrunError (exit 2) when it is not a valid secret name."""
    if not is_valid_name(name):
        raise CxrunError(
            f"invalid secret name {name!r}",
            "use capital letters, digits and underscores, not starting with a digit"
            " (e.g. OPENAI_API_KEY)",
        )
    return name


def reference_name(value: Any) -> str | None:
    """The NAME in a "secret:NAME" string, or None when the value is not a secret reference."""
    if isinstance(value, str) and value.startswith(PREFIX):
        return value[len(PREFIX) :]
    return None


class Secrets:
    """The project's secrets: the environment variable NAME wins over `.cxrun/secrets.json`."""

    def __init__(self, state_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.path = state_dir / SECRETS_FILE
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._seen: set[str] = set()

    def get(self, name: str) -> str | None:
        """The secret's value (an empty environment variable counts as unset), or None."""
        check_name(name)
        value = self._environ.get(name) or self._read().get(name)
        if value:
            self._seen.add(value)
        return value

    def resolve(self, value: Any) -> Any:
        """Replace "secret:NAME" by its value (MissingSecret when unset), in dicts and lists too."""
        if isinstance(value, Mapping):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.resolve(item) for item in value)
        name = reference_name(value)
        if name is None:
            return value
        found = self.get(name)
        if found is None:
            raise MissingSecret(name)
        return found

    def references(self, value: Any) -> set[str]:
        """Every NAME referenced as "secret:NAME" in a config value, without resolving any."""
        if isinstance(value, Mapping):
            return set().union(*(self.references(item) for item in value.values()))
        if isinstance(value, list | tuple):
            return set().union(*(self.references(item) for item in value))
        name = reference_name(value)
        return {name} if name is not None else set()

    def missing(self, value: Any) -> list[str]:
        """The referenced names that have no value (invalid names included: they cannot be set)."""
        return sorted(
            name
            for name in self.references(value)
            if not is_valid_name(name) or self.get(name) is None
        )

    def set(self, name: str, value: str) -> None:
        check_name(name)
        if not value:
            raise CxrunError(f"empty value for secret {name}", "give a non-empty value")
        stored = self._read()
        stored[name] = value
        self._write(stored)

    def remove(self, name: str) -> bool:
        """Remove a secret from the file; False when it was not there."""
        check_name(name)
        stored = self._read()
        if stored.pop(name, None) is None:
            return False
        self._write(stored)
        return True

    def names(self) -> list[str]:
        """The names stored in the file, sorted (values are never listed)."""
        return sorted(self._read())

    def remember(self, value: str) -> None:
        """Add a value to scrub that was obtained some other way than `get`/`resolve`."""
        if value:
            self._seen.add(value)

    def values(self) -> list[str]:
        """Every secret value that may be in use: the file's, and every value handed out."""
        try:
            stored = set(self._read().values())
        except CxrunError:  # a corrupt file has no values to scrub; reading it again reports it
            stored = set()
        return sorted(stored | self._seen)

    def redactor(self) -> Redactor:
        return Redactor(self.values())

    def _read(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise CxrunError(
                f"cannot read {self.path}: {error.strerror}", "check the file's permissions"
            ) from None
        return _parse(text, self.path)

    def _write(self, stored: Mapping[str, str]) -> None:
        data = json.dumps(dict(sorted(stored.items())), indent=2) + "\n"
        write_private(self.path, data.encode("utf-8"))


def _parse(text: str, path: Path) -> dict[str, str]:
    hint = f"fix or delete {path}, then set the secrets again with `cxrun secrets set NAME`"
    try:
        data = json.loads(text)
    except ValueError as error:
        raise CxrunError(f"{path} is not valid JSON ({error})", hint) from None
    if not isinstance(data, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in data.items()
    ):
        raise CxrunError(f'{path} must be a JSON object of NAME: "value" strings', hint)
    return data


def _ensure_private_folder(folder: Path) -> None:
    """Create the folder with mode 0700, or take group and other access away if it has any."""
    folder.mkdir(mode=_FOLDER_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) != _FOLDER_MODE:
        folder.chmod(_FOLDER_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Replace the file atomically (its folder made 0700 if need be); the temporary file is
    0600 from the moment it exists."""
    _ensure_private_folder(path.parent)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _FILE_MODE)  # exactly 0600 whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encodings(value: str) -> set[str]:
    """The forms a secret may take in text: as is, URL-encoded, and escaped inside JSON."""
    return {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


class Redactor:
    """Replaces secret values (and their encodings) with ***; values under 4 characters are kept."""

    def __init__(self, values: Iterable[str]) -> None:
        forms = {
            form for value in values if len(value) >= MIN_REDACT_LENGTH for form in encodings(value)
        }
        # Longest first: at any position the longest matching secret wins over its prefixes.
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def redact_json(self, value: Any) -> Any:
        """Redact every string (keys included) inside JSON-able data."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact_json(key): self.redact_json(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_json(item) for item in value]
        return value


def read_secret_value(stdin: TextIO, prompt: str) -> str:
    """A value for `cxrun secrets set`: hidden prompt on a terminal, else all of stdin."""
    if stdin.isatty():
        try:
            value = getpass.getpass(prompt)
        except EOFError:
            value = ""
    else:
        value = _strip_one_newline(stdin.read())
    if not value.strip():
        raise CxrunError(
            "empty secret value",
            "type the value at the prompt, or pipe it in: printf %s VALUE | cxrun secrets set NAME",
        )
    return value


def _strip_one_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")
