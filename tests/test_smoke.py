"""The example project in the repository: every spinner validates, publishes and runs."""

from __future__ import annotations

import json


def test_example_spinners_validate_publish_and_run(example_project, cli):
    assert cli(example_project, "validate").code == 0
    published = cli(example_project, "publish", "--json")
    assert published.code == 0, published
    names = {p["spinner"] for p in json.loads(published.stdout)}
    assert names == {"welcome", "lead-triage", "ai-welcome"}
    for name in sorted(names):
        result = cli(example_project, "run-now", name, "--json")
        job = json.loads(result.stdout)
        assert job["status"] in ("completed", "partial")
        assert result.code == (0 if job["status"] == "completed" else 3)
        assert job["completed"] + job["failed"] == job["total"] > 0
