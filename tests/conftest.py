"""Shared fixtures: temporary projects on disk, the Typer app, and the installed executable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrun.cli import app

REPO = Path(__file__).resolve().parent.parent
EXECUTABLE = Path(sys.executable).parent / "cxrun"

CONTACTS = """id,first_name,last_name,email,city,lifetime_value,signup_date
1,Ada,Lovelace,ada@example.org,London,1500.5,2026-01-10
2,Alan,Turing,alan@example.org,Manchester,80,2026-02-01
3,Grace,Hopper,,New York,2200,2026-03-15
4,Edsger,Dijkstra,edsger@example.org,Austin,300,2025-11-20
5,Barbara,Liskov,barbara@example.org,Boston,1200,2026-05-05
"""

WELCOME = """name: welcome
table: contacts
key: id
fields:
  email: {required: true}
  first_name: {}
steps:
  - id: hello
    log: "Welcome {{ first_name }}"
  - id: vip
    tag: vip
    when: "lifetime_value > 1000"
  - id: score
    set:
      score: "lifetime_value / 100"
"""


def write_project(
    root: Path,
    spinners: dict[str, str] | None = None,
    tables: dict[str, str] | None = None,
    config: str = "name: test\n",
) -> Path:
    """A project folder: cxrun.yaml, spinners/*.yaml and tables/*.csv from the given texts."""
    (root / "spinners").mkdir(parents=True, exist_ok=True)
    (root / "tables").mkdir(parents=True, exist_ok=True)
    (root / "cxrun.yaml").write_text(config)
    for name, text in (spinners if spinners is not None else {"welcome": WELCOME}).items():
        (root / "spinners" / f"{name}.yaml").write_text(text)
    for name, text in (tables if tables is not None else {"contacts": CONTACTS}).items():
        (root / "tables" / f"{name}.csv").write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A copy of the repository's own example project (cxrun.yaml, spinners/, tables/)."""
    root = tmp_path / "example"
    root.mkdir()
    shutil.copy(REPO / "cxrun.yaml", root / "cxrun.yaml")
    shutil.copytree(REPO / "spinners", root / "spinners")
    shutil.copytree(REPO / "tables", root / "tables")
    return root


Invoke = Callable[..., "CliResult"]


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run the Typer app in-process: cli(project_dir, "jobs", "--json")."""
    monkeypatch.delenv("CXRUN_PROJECT", raising=False)

    def invoke(root: Path, *args: str, input: str | None = None) -> CliResult:
        monkeypatch.chdir(root)
        result = CliRunner().invoke(app, list(args), input=input)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def run() -> Callable[..., CliResult]:
    """Run the installed `cxrun` executable in a subprocess, as a user or a CI script would."""

    def invoke(
        root: Path,
        *args: str,
        input: str | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> CliResult:
        environment = {k: v for k, v in os.environ.items() if k != "CXRUN_PROJECT"}
        environment.update(env or {})
        done = subprocess.run(
            [str(EXECUTABLE), *args],
            cwd=root,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    return invoke


def set_now(monkeypatch: pytest.MonkeyPatch, moment: str | None) -> None:
    """Fix the clock at `moment` (an ISO time; None: the real clock) for commands run in this
    process and, through CXRUN_NOW, for those run in subprocesses."""
    from cxrun.base import clock

    if moment is None:
        monkeypatch.delenv("CXRUN_NOW", raising=False)
        clock.fix(None)
    else:
        monkeypatch.setenv("CXRUN_NOW", moment)
        clock.fix(clock.parse_moment(moment))


@pytest.fixture(autouse=True)
def _real_clock_after_each_test():  # type: ignore[no-untyped-def]
    yield
    from cxrun.base import clock

    clock.fix(None)
