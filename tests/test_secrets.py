"""Secrets: the 0600 file, environment precedence, resolving references, and redaction."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cxrun.base.errors import CxrunError, ExitCode
from cxrun.base.secrets import (
    MissingSecret,
    Redactor,
    Secrets,
    ShortSecret,
    excerpt,
    read_secret_value,
    scrub_json,
)

CANARY = "CANARY-7f3a9b"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / ".cxrun"


def test_file_value_when_no_environment(state: Path) -> None:
    Secrets(state, {}).set("API_KEY", "from-file")
    assert Secrets(state, {}).get("API_KEY") == "from-file"
    assert Secrets(state, {}).get("OTHER") is None


def test_environment_beats_file(state: Path) -> None:
    Secrets(state, {}).set("API_KEY", "from-file")
    assert Secrets(state, {"API_KEY": "from-env"}).get("API_KEY") == "from-env"
    assert Secrets(state, {"API_KEY": ""}).get("API_KEY") == "from-file"


def test_set_creates_private_file_and_folder(state: Path) -> None:
    Secrets(state, {}).set("API_KEY", "value-one")
    assert mode(state) == 0o700
    assert mode(state / "secrets.json") == 0o600
    assert json.loads((state / "secrets.json").read_text()) == {"API_KEY": "value-one"}


def test_set_tightens_an_open_folder(state: Path) -> None:
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "state.duckdb").write_text("kept")
    Secrets(state, {}).set("API_KEY", "value-one")
    assert mode(state) == 0o700
    assert (state / "state.duckdb").read_text() == "kept"


def test_write_leaves_no_temporary_files(state: Path) -> None:
    secrets = Secrets(state, {})
    for number in range(3):
        secrets.set(f"KEY_{number}", f"value-{number:04}")
    secrets.remove("KEY_1")
    assert sorted(p.name for p in state.iterdir()) == ["secrets.json"]


def test_temporary_file_is_never_readable_by_others(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_replace = os.replace

    def spy(source: Any, target: Any) -> None:
        modes.append(mode(Path(source)))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spy)
    Secrets(state, {}).set("API_KEY", "value-one")
    assert modes == [0o600]


def test_failed_write_keeps_old_file_and_removes_temporary(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = Secrets(state, {})
    secrets.set("API_KEY", "old-value")

    def broken(source: Any, target: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        secrets.set("API_KEY", "new-value")
    assert sorted(p.name for p in state.iterdir()) == ["secrets.json"]
    assert secrets.get("API_KEY") == "old-value"


def test_remove(state: Path) -> None:
    secrets = Secrets(state, {})
    secrets.set("API_KEY", "value-one")
    secrets.set("TOKEN", "value-two")
    assert secrets.remove("API_KEY") is True
    assert secrets.remove("API_KEY") is False
    assert secrets.names() == ["TOKEN"]
    assert secrets.get("API_KEY") is None


def test_names_are_sorted_and_never_show_values(state: Path) -> None:
    secrets = Secrets(state, {"FROM_ENV": "env-value"})
    for name in ("ZED", "ALPHA", "MIDDLE"):
        secrets.set(name, f"value-of-{name}")
    listed = secrets.names()
    assert listed == ["ALPHA", "MIDDLE", "ZED"]
    assert not any("value-of" in name for name in listed)
    assert Secrets(state / "absent", {}).names() == []


def test_set_refuses_empty_value(state: Path) -> None:
    with pytest.raises(CxrunError):
        Secrets(state, {}).set("API_KEY", "")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"API_KEY": 3}'])
def test_corrupt_file_is_a_bad_input_error_naming_it(state: Path, text: str) -> None:
    state.mkdir()
    (state / "secrets.json").write_text(text)
    with pytest.raises(CxrunError) as caught:
        Secrets(state, {}).get("API_KEY")
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert str(state / "secrets.json") in caught.value.message


def test_missing_secret_names_it_and_says_how_to_set_it(state: Path) -> None:
    with pytest.raises(MissingSecret) as caught:
        Secrets(state, {}).resolve("secret:OPENAI_API_KEY")
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert caught.value.name == "OPENAI_API_KEY"
    assert "cxrun secrets set OPENAI_API_KEY" in caught.value.message
    assert "environment variable OPENAI_API_KEY" in caught.value.message


def test_resolve_nested(state: Path) -> None:
    secrets = Secrets(state, {"TOKEN": "tok-123456"})
    secrets.set("API_KEY", "key-456789")
    config = {
        "kind": "webhook",
        "port": 8080,
        "headers": {"Authorization": "secret:TOKEN", "X-Plain": "secret-ish"},
        "list": ["secret:API_KEY", ("secret:TOKEN", None)],
    }
    assert secrets.resolve(config) == {
        "kind": "webhook",
        "port": 8080,
        "headers": {"Authorization": "tok-123456", "X-Plain": "secret-ish"},
        "list": ["key-456789", ("tok-123456", None)],
    }
    assert secrets.resolve("plain") == "plain"
    assert secrets.resolve(None) is None


def test_references_nested_without_resolving(state: Path) -> None:
    secrets = Secrets(state, {})
    config = {
        "openai": {"api_key": "secret:OPENAI_API_KEY"},
        "hooks": {"headers": {"Authorization": "secret:HOOK_TOKEN"}, "urls": ["secret:URL"]},
        "mail": {"host": "localhost", "port": 1025},
    }
    assert secrets.references(config) == {"OPENAI_API_KEY", "HOOK_TOKEN", "URL"}
    assert secrets.references("plain") == set()
    assert secrets.missing(config) == ["HOOK_TOKEN", "OPENAI_API_KEY", "URL"]
    secrets.set("URL", "https://example.org")
    assert secrets.missing(config) == ["HOOK_TOKEN", "OPENAI_API_KEY"]


@pytest.mark.parametrize("name", ["lower", "1STARTS_WITH_DIGIT", "HAS-DASH", "", "A B", "OK\n"])
def test_invalid_names_are_refused(state: Path, name: str) -> None:
    secrets = Secrets(state, {})
    for attempt in (
        lambda: secrets.set(name, "value"),
        lambda: secrets.get(name),
        lambda: secrets.remove(name),
        lambda: secrets.resolve(f"secret:{name}"),
    ):
        with pytest.raises(CxrunError) as caught:
            attempt()
        assert caught.value.exit_code == ExitCode.BAD_INPUT
        assert "invalid secret name" in caught.value.message
    assert not state.exists()


def test_values_cover_file_and_environment_values_in_use(state: Path) -> None:
    secrets = Secrets(state, {"ENV_TOKEN": "env-token-value", "UNUSED": "unused-value"})
    secrets.set("FILE_KEY", "file-key-value")
    secrets.resolve({"a": "secret:ENV_TOKEN"})
    secrets.remember("remembered-value")
    assert secrets.values() == ["env-token-value", "file-key-value", "remembered-value"]
    assert secrets.redactor().redact("x env-token-value y") == "x *** y"


def test_values_survive_a_corrupt_file(state: Path) -> None:
    state.mkdir()
    (state / "secrets.json").write_text("{broken")
    secrets = Secrets(state, {})
    secrets.remember("remembered-value")
    assert secrets.values() == ["remembered-value"]


def test_redact_plain_and_url_encoded() -> None:
    redactor = Redactor(["s3cr3t/pa ss+word&x"])
    text = (
        "auth s3cr3t/pa ss+word&x"
        " url ?k=s3cr3t%2Fpa%20ss%2Bword%26x"
        " form k=s3cr3t%2Fpa+ss%2Bword%26x"
        " path /s3cr3t/pa%20ss%2Bword%26x"
    )
    assert redactor.redact(text) == "auth *** url ?k=*** form k=*** path /***"


def test_redact_json_escaped_form() -> None:
    redactor = Redactor(['quote"back\\slash'])
    echoed = json.dumps({"error": 'bad key quote"back\\slash'})
    assert "quote" not in redactor.redact(echoed)


def test_redact_json_nested() -> None:
    redactor = Redactor(["tok-123456"])
    data = {
        "error": "401 for token tok-123456",
        "tok-123456": [1, "Bearer tok-123456", {"deep": ("tok-123456",)}],
        "n": 3,
        "none": None,
    }
    assert redactor.redact_json(data) == {
        "error": "401 for token ***",
        "***": [1, "Bearer ***", {"deep": ["***"]}],
        "n": 3,
        "none": None,
    }


def test_every_value_given_is_scrubbed_whatever_its_length() -> None:
    assert Redactor(["", "  "]).redact("on abc and more  ") == "on abc and more  "
    assert Redactor(["abc"]).redact("xabcx") == "x***x"  # Secrets never hands out such a one


def test_no_values_is_a_no_op() -> None:
    data = {"a": ["b"]}
    redactor = Redactor([])
    assert redactor.redact("anything") == "anything"
    assert redactor.redact_json(data) is data


def test_longest_secret_wins_over_its_prefix() -> None:
    for values in (["abcd", "abcdefgh"], ["abcdefgh", "abcd"]):
        redactor = Redactor(values)
        assert redactor.redact("key=abcdefgh;") == "key=***;"
        assert redactor.redact("key=abcdxx;") == "key=***xx;"


def test_hex_and_base64_forms_are_scrubbed() -> None:
    redactor, data = Redactor([CANARY]), CANARY.encode()
    forms = [
        data.hex(),
        data.hex().upper(),
        base64.b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
    ]
    for form in forms:
        assert redactor.redact(f"<{form}>") == "<***>", form


@pytest.mark.parametrize("user", ["", "a", "ab", "abc", "abcd", "abcde"])
def test_base64_inside_a_longer_text_is_scrubbed_at_every_alignment(user: str) -> None:
    """`Basic base64(user:secret)` ends with the secret; a whole header line does not."""
    redactor = Redactor([CANARY])
    for raw in (f"{user}:{CANARY}", f"{user}:{CANARY}\r\nx-next: 1"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            echoed = encode(raw.encode()).decode()
            kept = redactor.redact(echoed)
            assert "***" in kept, (raw, kept)
            # left: the characters of the rest, and at most 2 per side that mix in its bits
            secret_part = len(encode(CANARY.encode()).rstrip(b"="))
            assert len(kept.replace("***", "")) <= len(echoed) - secret_part + 4, kept


def test_a_run_of_whitespace_in_a_secret_matches_any_run() -> None:
    redactor = Redactor(["SPACED  7f3a9b"])
    for spelling in ("SPACED  7f3a9b", "SPACED 7f3a9b", "SPACED\n\t 7f3a9b", "SPACED\u00a07f3a9b"):
        assert redactor.redact(f"[{spelling}]") == "[***]", spelling
    assert redactor.redact("SPACED7f3a9b") == "SPACED7f3a9b"  # no whitespace: another text


def test_surrounding_whitespace_of_a_value_is_not_needed_to_match() -> None:
    assert Redactor([f"  {CANARY}\n"]).redact(f'"Bearer {CANARY}"') == '"Bearer ***"'


def test_excerpt_scrubs_the_whole_text_before_it_cuts_or_collapses() -> None:
    redact = Redactor([CANARY, "SPACED  7f3a9b"]).redact
    for start in range(185, 200):  # the secret straddling the cut at every offset
        kept = excerpt("x" * start + CANARY + "y" * 50, redact)
        assert len(kept) == 200 and kept.endswith("…")
        assert not any(CANARY[i : i + 4] in kept for i in range(len(CANARY) - 3)), kept
    assert excerpt("a  SPACED \n 7f3a9b\n\nb", redact) == "a *** b"
    assert excerpt("short\ntext", redact, 5) == "shor…"


def test_scrub_json_covers_keys_strings_and_numbers() -> None:
    redact = Redactor(["73519264"]).redact
    data = {"id": 73519264, "73519264": ["x 73519264"], "ok": [1, True, None, 2.5]}
    assert scrub_json(data, redact) == {"id": "***", "***": ["x ***"], "ok": [1, True, None, 2.5]}
    untouched = {"a": [1, "b"]}
    assert scrub_json(untouched, redact) is untouched


def test_the_redactor_of_secrets_scrubs_values_handed_out_after_it(state: Path) -> None:
    secrets = Secrets(state, {"LATER_KEY": "handed-out-later"})
    redactor = secrets.redactor()
    assert redactor.redact("x handed-out-later") == "x handed-out-later"  # not in use yet
    secrets.resolve("secret:LATER_KEY")
    assert redactor.redact("x handed-out-later") == "x ***"


@pytest.mark.parametrize("value", ["z9", "abc1234", "ab cd ef g", "\t1234567\n"])
def test_set_refuses_a_value_under_8_characters_and_stores_nothing(state: Path, value: str) -> None:
    with pytest.raises(ShortSecret) as caught:
        Secrets(state, {}).set("API_KEY", value)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "API_KEY" in caught.value.message and "at least 8" in caught.value.message
    assert value.strip() not in caught.value.message + str(caught.value.hint)
    assert not state.exists()
    Secrets(state, {}).set("API_KEY", "abcd 1234")  # 8 once the space is left out
    assert Secrets(state, {}).names() == ["API_KEY"]


def test_a_short_value_is_never_used_nor_scrubbed(state: Path) -> None:
    state.mkdir()
    (state / "secrets.json").write_text(json.dumps({"OLD": "on", "FINE": "long-enough"}))
    secrets = Secrets(state, {"TINY": "a"})
    for name, where in (("TINY", "environment variable TINY"), ("OLD", "secrets.json")):
        with pytest.raises(ShortSecret) as caught:
            secrets.resolve({"key": f"secret:{name}"})
        assert caught.value.exit_code == ExitCode.BAD_INPUT and where in caught.value.message
    secrets.remember("on")
    assert secrets.values() == ["long-enough"]
    assert secrets.redactor().redact("a long-enough answer on") == "a *** answer on"


def test_read_secret_value_from_a_pipe_strips_one_newline() -> None:
    assert read_secret_value(io.StringIO("value-1\n"), "Value: ") == "value-1"
    assert read_secret_value(io.StringIO("value-1\r\n"), "Value: ") == "value-1"
    assert read_secret_value(io.StringIO("two\nlines\n\n"), "Value: ") == "two\nlines\n"
    assert read_secret_value(io.StringIO("no-newline"), "Value: ") == "no-newline"


@pytest.mark.parametrize("text", ["", "\n", "  \n"])
def test_read_secret_value_refuses_empty(text: str) -> None:
    with pytest.raises(CxrunError) as caught:
        read_secret_value(io.StringIO(text), "Value: ")
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_read_secret_value_prompts_hidden_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return "typed-value"

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert read_secret_value(Terminal("ignored\n"), "Value for API_KEY: ") == "typed-value"
    assert prompts == ["Value for API_KEY: "]
