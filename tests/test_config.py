"""cxrun.yaml: a file that passed every check is not checked again until it changes."""

from __future__ import annotations

import stat

from conftest import write_project

SPINNER = """table: contacts
key: id
steps:
  - id: draft
    ai: {provider: demo, model: echo-1, prompt: "Hi {{ first_name }}", output: draft}
"""
CONFIG = """name: t
providers:
  demo: {kind: echo}
channels:
  box: {kind: outbox}
"""


def project(tmp_path, config=CONFIG):
    return write_project(tmp_path / "p", spinners={"s": SPINNER}, config=config)


def test_a_checked_file_is_remembered_and_a_changed_one_checked_again(tmp_path, cli):
    root = project(tmp_path)
    assert cli(root, "validate").code == 0
    remembered = root / ".cxrun" / "config.checked"
    assert stat.S_IMODE(remembered.stat().st_mode) == 0o600
    assert cli(root, "run-now", "s").code == 2  # not published yet: the config was fine

    (root / "cxrun.yaml").write_text(CONFIG + "limits: {jobs_per_month: many}\n")
    result = cli(root, "validate")
    assert result.code == 2
    assert "cxrun.yaml: limits.jobs_per_month: 'many' is not of type 'integer'" in result.stderr

    (root / "cxrun.yaml").write_text(CONFIG.replace("{kind: echo}", "{kind: echo, colour: red}"))
    result = cli(root, "validate")
    assert result.code == 2
    assert "providers.demo: Additional properties are not allowed ('colour'" in result.stderr


def test_a_bad_entry_no_spinner_uses_is_not_remembered_as_checked(tmp_path, cli):
    root = project(tmp_path, CONFIG + "  hooks: {kind: webhook}\n")  # a webhook needs a url
    assert cli(root, "validate").code == 0
    assert not (root / ".cxrun" / "config.checked").exists()


def test_a_remembered_file_still_needs_its_secrets(tmp_path, cli, monkeypatch):
    config = CONFIG + "  hooks: {kind: webhook, url: 'http://127.0.0.1:9', secret: 'secret:HK'}\n"
    spinner = SPINNER + "  - id: tell\n    send: {channel: hooks, to: x, text: '{{ draft }}'}\n"
    root = project(tmp_path, config)
    (root / "spinners" / "s.yaml").write_text(spinner)
    monkeypatch.setenv("HK", "k")
    assert cli(root, "publish").code == 0
    assert (root / ".cxrun" / "config.checked").exists()
    monkeypatch.delenv("HK")
    result = cli(root, "run-now", "s")
    assert result.code == 2
    assert "secret HK is not set" in result.stderr


def test_a_folder_that_cannot_be_written_goes_without_the_shortcut(tmp_path, cli):
    root = project(tmp_path)
    (root / ".cxrun").mkdir()
    (root / ".cxrun" / "config.checked").mkdir()  # in the way: the fingerprint cannot be kept
    result = cli(root, "validate")
    assert result.code == 0, result
    assert (root / ".cxrun" / "config.checked").is_dir()
