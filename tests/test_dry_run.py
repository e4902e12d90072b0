"""run-now --dry-run: what each I/O step would send, a token estimate, and no job left behind."""

from __future__ import annotations

import json

from conftest import write_project

CONFIG = """name: t
providers:
  demo: {kind: echo}
channels:
  box: {kind: outbox}
"""
SPINNER = """table: contacts
key: id
steps:
  - id: hello
    log: "Hi {{ first_name }}"
  - id: draft
    ai: {provider: demo, model: echo-1, prompt: "Welcome {{ first_name }} from {{ city }}",
         output: draft, max_tokens: 50}
  - id: send
    when: "lifetime_value > 100"
    send: {channel: box, to: "{{ email }}", subject: "Hi {{ first_name }}", text: "{{ draft }}"}
  - id: enrich
    http: {method: POST, url: "http://127.0.0.1:9/people/{{ id }}", json: {who: "{{ email }}"}}
"""


def project(tmp_path):
    return write_project(tmp_path / "p", spinners={"s": SPINNER}, config=CONFIG)


def test_dry_run_renders_each_call_and_leaves_no_job(tmp_path, cli):
    root = project(tmp_path)
    assert cli(root, "publish").code == 0
    result = cli(root, "run-now", "s", "--dry-run", "--limit", "2", "--json")
    assert result.code == 0, result
    preview = json.loads(result.stdout)
    assert (preview["selected"], preview["shown"]) == (5, 2)
    first = preview["rows"][0]
    assert first["record"] == "1"
    calls = {call["step"]: call for call in first["calls"]}
    assert calls["draft"]["prompt"] == "Welcome Ada from London"
    assert calls["draft"]["target"] == "demo"
    # An I/O step's output is not known in a dry run: later templates show a placeholder.
    assert (calls["send"]["to"], calls["send"]["text"]) == ("ada@example.org", "<draft>")
    assert calls["send"]["subject"] == "Hi Ada"
    assert calls["enrich"]["url"] == "http://127.0.0.1:9/people/1"
    assert calls["enrich"]["json/who"] == "ada@example.org"
    # Alan's lifetime value is 80: his send step would not run.
    assert [c["step"] for c in preview["rows"][1]["calls"]] == ["draft", "enrich"]
    estimate = preview["estimate"]
    assert estimate["completion_tokens"] == 5 * 50  # max_tokens for each of the 5 rows
    assert estimate["prompt_tokens"] > 0
    assert json.loads(cli(root, "jobs", "--json").stdout) == []
    assert json.loads(cli(root, "outbox", "--json").stdout) == []


def test_dry_run_takes_where_and_prints_a_readable_preview(tmp_path, cli):
    root = project(tmp_path)
    assert cli(root, "publish").code == 0
    result = cli(root, "run-now", "s", "--dry-run", "--where", "city = 'Boston'")
    assert result.code == 0, result
    assert "record 5" in result.stdout and "record 1" not in result.stdout
    assert "prompt: Welcome Barbara from Boston" in result.stdout
    assert "1 rows selected" in result.stdout and "nothing was sent" in result.stdout
    bad = cli(root, "run-now", "s", "--dry-run", "--where", "cty = 'Boston'")
    assert bad.code == 2 and '"city"' in bad.stderr
