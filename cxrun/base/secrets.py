"""Local secrets: naming, resolving `secret:NAME`, the 0600 secrets file, and redaction."""

from __future__ import annotations

import base64
import functools
import getpass
import json
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

from cxrun.base.errors import CxrunError

SECRETS_FILE = "secrets.json"
PREFIX = "secret:"
MASK = "***"
# The fewest characters (whitespace not counted) a secret may have. A shorter one could not be
# scrubbed without masking ordinary text ("on", "a1"), so cxrun refuses to store or use it.
MIN_SECRET_LENGTH = 8
EXCERPT = 200  # characters kept of a text from outside shown as a message (an answer, a body)

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


class ShortSecret(CxrunError):
    """A secret value too short to be scrubbed from what cxrun stores and prints."""

    def __init__(self, name: str, value: str, where: str, hint: str) -> None:
        super().__init__(
            f"secret {name} ({where}) has {_count(_length(value), 'character')}: a secret needs "
            f"at least {MIN_SECRET_LENGTH} (whitespace not counted), as a shorter one could not "
            "be scrubbed from outputs without masking ordinary text",
            hint,
        )
        self.name = name


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _length(value: str) -> int:
    return sum(not char.isspace() for char in value)


def long_enough(value: str) -> bool:
    """Whether a value may be a secret: MIN_SECRET_LENGTH characters or more, besides spaces."""
    return _length(value) >= MIN_SECRET_LENGTH


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
        if value and long_enough(value):  # a shorter one is refused by resolve, never used
            self._seen.add(value)
        return value

    def resolve(self, value: Any) -> Any:
        """Replace "secret:NAME" by its value, in dicts and lists too: MissingSecret when it is
        unset, ShortSecret when it is too short to be scrubbed (set in the environment, or in
        a file written before cxrun refused them)."""
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
        if not long_enough(found):
            raise self._short(name, found)
        return found

    def _short(self, name: str, value: str) -> ShortSecret:
        if self._environ.get(name):
            where = f"the environment variable {name}"
            return ShortSecret(name, value, where, f"set {name} to the whole key or token")
        hint = f"store the whole key or token with `cxrun secrets set {name}`"
        return ShortSecret(name, value, f"in {SECRETS_FILE}", hint)

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
        if not long_enough(value):
            hint = "give the whole key or token; nothing was stored"
            raise ShortSecret(name, value, "the value given", hint)
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
        if long_enough(value):
            self._seen.add(value)

    def values(self) -> list[str]:
        """Every secret value that may be in use: the file's, and every value handed out (a
        value too short to be one is never handed out, so it is not scrubbed either)."""
        try:
            stored = set(filter(long_enough, self._read().values()))
        except CxrunError:  # a corrupt file has no values to scrub; reading it again reports it
            stored = set()
        return sorted(stored | self._seen)

    def redactor(self) -> Redactor:
        """A Redactor of values() that also scrubs the values handed out after it was made
        (an API key set again while a job runs, looked up again by its provider)."""
        return Redactor(self.values(), later=self._seen)

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
    """The forms a secret may take in text: as is, URL-encoded, escaped inside JSON, and its
    UTF-8 bytes in hex and base64."""
    return {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    } | _binary_forms(value.encode())


_URLSAFE = str.maketrans("+/", "-_")


def _binary_forms(data: bytes) -> set[str]:
    """Hex (lower and upper case), and base64 (standard and URL-safe, padded or not) as the
    bytes read alone or inside a longer base64 text such as `Basic base64(user:secret)`.

    Inside a longer text the base64 of the bytes depends on their offset modulo 3: for each
    offset, the characters that encode only the secret's bits are a form, and so are those
    characters up to the end (when the secret ends the encoded text)."""
    forms = {data.hex(), data.hex().upper()}
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + data).decode()
        start = -(-8 * shift // 6)  # the first character that holds no bit before the secret
        stop = 8 * (shift + len(data)) // 6  # past the last one that holds none after it
        for text in (encoded, encoded.translate(_URLSAFE)):
            forms |= {text[start:stop], text[start:], text[start:].rstrip("=")}
    return forms


Scrub = Callable[[str], str]
_SCAN_FIRST = 128  # characters past which a text is scanned for the forms' pieces first


@functools.lru_cache(maxsize=64)
def _scrubber(values: frozenset[str]) -> Scrub:
    """Replace every form of these values with ***; a run of whitespace in a value matches
    any run of whitespace (so collapsing spaces afterwards never re-forms a secret)."""
    forms = {form for value in values for form in encodings(value.strip())}
    if not forms:
        return lambda text: text
    # Longest first: at any position the longest matching secret wins over its prefixes.
    ordered = sorted(forms, key=lambda form: (-len(form), form))
    pattern = re.compile("|".join(r"\s+".join(map(re.escape, f.split())) for f in ordered))
    needles = _needles(ordered)

    def scrub(text: str) -> str:
        # On a longer text, a few substring scans rule out most texts faster than the pattern.
        if len(text) > _SCAN_FIRST and not any(needle in text for needle in needles):
            return text
        return pattern.sub(MASK, text)

    return scrub


def _needles(forms: Iterable[str]) -> tuple[str, ...]:
    """Substrings such that a text holding none of them holds no form: each form's longest
    piece without whitespace, leaving out those that contain another (it suffices)."""
    pieces = {max(form.split(), key=len) for form in forms}
    return tuple(p for p in pieces if not any(q != p and q in p for q in pieces))


class Redactor:
    """Replaces secret values (and their encodings) with ***.

    Every value given is scrubbed, whatever its length: Secrets never hands out one shorter
    than MIN_SECRET_LENGTH. `later`: a set that may grow (Secrets' values handed out); its
    values are scrubbed too, from the moment they are in it.
    """

    def __init__(self, values: Iterable[str], later: set[str] | None = None) -> None:
        self._values = frozenset(value for value in values if value.strip())
        self._later = later
        self._known = -1
        self._scrub = _scrubber(self._values)

    def redact(self, text: str) -> str:
        later = self._later
        if later is not None and len(later) != self._known:  # only ever grows
            self._known = len(later)
            self._scrub = _scrubber(self._values | {value for value in later if value.strip()})
        return self._scrub(text)

    def redact_json(self, value: Any) -> Any:
        """Redact every string (keys included) inside JSON-able data."""
        return scrub_json(value, self.redact)


def excerpt(text: str, redact: Scrub, limit: int = EXCERPT) -> str:
    """What is kept of a text from outside (an answer, an error body): secrets scrubbed from the
    whole text first, then whitespace collapsed and the result cut to `limit` characters.

    Scrubbing first means no cut leaves part of a secret, and no collapsed space changes a
    secret's spelling, for the scrubber to miss."""
    clean = redact(text)
    head = 4 * limit  # collapsed, this start of the text is enough unless it is mostly spaces
    flat = " ".join(clean[:head].split())
    if len(flat) <= limit and len(clean) > head:
        flat = " ".join(clean.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def scrub_json(value: Any, redact: Scrub) -> Any:
    """JSON-able data with every string (keys included) scrubbed, and every number whose
    digits hold a secret replaced by the scrubbed digits (the data itself when none did)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        found = {scrub_json(key, redact): scrub_json(item, redact) for key, item in value.items()}
        return value if found == value else found
    if isinstance(value, list | tuple):
        listed = [scrub_json(item, redact) for item in value]
        return value if listed == list(value) else listed
    if isinstance(value, int | float) and not isinstance(value, bool):
        digits = json.dumps(value)
        cleaned = redact(digits)
        return value if cleaned == digits else cleaned
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
