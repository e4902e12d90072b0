"""Bad input in the state folder: a damaged state file, a lock file that is a folder, a .cxrun
that is a file or read-only, `cxrun init` onto a file or where it cannot write. Each exits 2 with
a message naming the file and what to do; no file of the project changes, and once the damage
is undone (where a case can undo it) the state is the baseline's again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import pytest
from conftest import EXECUTABLE, CliResult
from test_bad_input import INTERNAL_ERROR, Baseline, _copy, _state, build_baseline

STATE = ".cxrun/state.duckdb"
START_OVER = ("mv .cxrun/state.duckdb .cxrun/state.damaged", "`cxrun publish`")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """The bad-input corpus's baseline: welcome published (version 1) and run once (job 1)."""
    return build_baseline(tmp_path_factory.mktemp("baseline"))


def sql(statement: str) -> Callable[[Path], None]:
    """Change the state file with DuckDB directly, as a user poking at it might."""

    def apply(root: Path) -> None:
        con = duckdb.connect(str(root / STATE))
        try:
            con.execute(statement)
        finally:
            con.close()

    return apply


def cut(size: Callable[[int], int]) -> Callable[[Path], None]:
    """Truncate the state file to `size(its size)` bytes."""

    def apply(root: Path) -> None:
        path = root / STATE
        with path.open("r+b") as handle:
            handle.truncate(size(path.stat().st_size))

    return apply


def lock_is_a_folder(root: Path) -> None:
    (root / ".cxrun" / "state.lock").unlink()
    (root / ".cxrun" / "state.lock").mkdir()


def lock_is_a_file_again(root: Path) -> None:
    (root / ".cxrun" / "state.lock").rmdir()


def state_folder_is_a_file(root: Path) -> None:
    (root / ".cxrun").rename(root / "state-folder")
    (root / ".cxrun").write_text("not a folder\n")


def state_folder_back(root: Path) -> None:
    (root / ".cxrun").unlink()
    (root / "state-folder").rename(root / ".cxrun")


def read_only_state_folder(root: Path) -> None:
    (root / ".cxrun").chmod(0o500)


def read_only_state_folder_without_lock_files(root: Path) -> None:
    (root / ".cxrun" / "state.lock").unlink()
    (root / ".cxrun" / "state.want").unlink()
    (root / ".cxrun").chmod(0o500)


def writable_state_folder(root: Path) -> None:
    (root / ".cxrun").chmod(0o700)


def read_only_project_without_state(root: Path) -> None:
    (root / ".cxrun").rename(root.parent / "state-folder")
    root.chmod(0o500)


def project_writable_with_state(root: Path) -> None:
    root.chmod(0o700)
    (root.parent / "state-folder").rename(root / ".cxrun")


def a_file(name: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / name).write_text("notes\n")

    return apply


def read_only_folder(name: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / name).mkdir(mode=0o500)

    return apply


@dataclass(frozen=True)
class Case:
    breaks: Callable[[Path], None]
    args: tuple[str, ...]
    says: tuple[str, ...]  # substrings that stderr must contain
    repair: Callable[[Path], None] | None = None  # undo the damage before checking the state
    unprivileged: bool = False  # needs a user whom file permissions bind (root is not one)


CASES = [
    # ---- a damaged state file: named, left as it is, with how to start over ------------------
    pytest.param(
        Case(cut(lambda size: size // 2), ("jobs", "--json"), (STATE, "is damaged", *START_OVER)),
        id="state-cut-in-half",
    ),
    pytest.param(
        Case(cut(lambda size: size // 2), ("run-now", "welcome"), (STATE, "is damaged")),
        id="state-cut-in-half-at-run",
    ),
    pytest.param(
        Case(cut(lambda size: 100), ("records", "1", "--json"), (STATE, "is damaged", *START_OVER)),
        id="state-cut-to-100-bytes",
    ),
    pytest.param(
        Case(
            sql("DROP TABLE cx_records"),
            ("records", "1", "--json"),
            (STATE, "table cx_records is missing", *START_OVER),
        ),
        id="state-table-dropped",
    ),
    pytest.param(
        Case(sql("DROP TABLE cx_records"), ("publish",), (STATE, "table cx_records is missing")),
        id="state-table-dropped-at-publish",
    ),
    pytest.param(
        Case(sql("DROP TABLE cx_meta"), ("jobs", "--json"), (STATE, "schema version", "cx_meta")),
        id="state-schema-version-dropped",
    ),
    pytest.param(
        Case(
            sql("UPDATE cx_jobs SET status = 'bogus'"),
            ("jobs", "--json"),
            (STATE, "job 1 has the unknown status 'bogus'", *START_OVER),
        ),
        id="state-unknown-job-status",
    ),
    pytest.param(
        Case(
            sql("UPDATE cx_jobs SET status = 'bogus'"),
            ("job", "1", "--json"),
            (STATE, "unknown status 'bogus'"),
        ),
        id="state-unknown-job-status-one-job",
    ),
    # ---- the state folder and its lock -------------------------------------------------------
    pytest.param(
        Case(
            lock_is_a_folder,
            ("jobs", "--json"),
            (".cxrun/state.lock is a folder", "mv .cxrun/state.lock .cxrun/state.lock.old"),
            repair=lock_is_a_file_again,
        ),
        id="lock-file-is-a-folder",
    ),
    pytest.param(
        Case(
            state_folder_is_a_file,
            ("run-now", "welcome"),
            (".cxrun is a file", "mv .cxrun .cxrun.old"),
            repair=state_folder_back,
        ),
        id="state-folder-is-a-file",
    ),
    pytest.param(
        Case(
            read_only_state_folder,
            ("run-now", "welcome"),
            ("cannot write .cxrun/state.duckdb", "Permission denied", "chmod"),
            repair=writable_state_folder,
            unprivileged=True,
        ),
        id="state-folder-read-only",
    ),
    pytest.param(
        Case(
            read_only_state_folder_without_lock_files,
            ("jobs", "--json"),
            ("cannot open .cxrun/state.lock", "Permission denied", "writable"),
            repair=writable_state_folder,
            unprivileged=True,
        ),
        id="state-folder-read-only-without-lock-files",
    ),
    pytest.param(
        Case(
            read_only_project_without_state,
            ("jobs", "--json"),
            ("cannot create the state folder .cxrun/", "Permission denied"),
            repair=project_writable_with_state,
            unprivileged=True,
        ),
        id="state-folder-cannot-be-made",
    ),
    # ---- cxrun init where it cannot write ------------------------------------------------------
    pytest.param(
        Case(a_file("notes.txt"), ("init", "notes.txt"), ("notes.txt is a file, not a folder",)),
        id="init-onto-a-file",
    ),
    pytest.param(
        Case(
            read_only_folder("locked"),
            ("init", "locked/new"),
            ("cannot write locked/new/cxrun.yaml", "Permission denied"),
            unprivileged=True,
        ),
        id="init-in-a-read-only-place",
    ),
]


@cache
def _unprivileged_prefix() -> tuple[str, ...] | None:
    """What runs a command as a user whom file permissions bind: nothing for a normal user; for
    root, a user namespace (`unshare --user`), in which root's own files are checked by their
    owner's permission bits; None when running as root with no user namespaces to be had."""
    if os.geteuid() != 0:
        return ()
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    tried = subprocess.run([unshare, "--user", "true"], capture_output=True, check=False)
    return (unshare, "--user") if tried.returncode == 0 else None


def runnable(case: Case) -> bool:
    return not case.unprivileged or _unprivileged_prefix() is not None


def _unprivileged(root: Path, *args: str) -> CliResult:
    """The installed executable, in `root`, as a user whom file permissions bind."""
    prefix = _unprivileged_prefix()
    assert prefix is not None
    environment = {k: v for k, v in os.environ.items() if k != "CXRUN_PROJECT"}
    done = subprocess.run(
        [*prefix, str(EXECUTABLE), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def broken(case: Case, baseline: Baseline, folder: Path) -> Path:
    """A copy of the baseline (under `folder`), broken as the case says."""
    root = _copy(baseline, folder)
    case.breaks(root)
    return root


def invoke(case: Case, root: Path, cli) -> CliResult:
    return _unprivileged(root, *case.args) if case.unprivileged else cli(root, *case.args)


def run_case(case: Case, baseline: Baseline, folder: Path, cli) -> tuple[Path, CliResult]:
    """The case's command, run in a copy of the baseline that it broke."""
    root = broken(case, baseline, folder)
    return root, invoke(case, root, cli)


def _files(root: Path) -> dict[str, str]:
    """Every path under the project's folder with what it is: a folder, a link, a file's digest."""
    found = {}
    for path in sorted(root.parent.rglob("*")):
        shown = str(path.relative_to(root.parent))
        if path.is_symlink():
            found[shown] = f"link to {os.readlink(path)}"
        elif path.is_dir():
            found[shown] = "folder"
        else:
            found[shown] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize("case", CASES)
def test_bad_state(case: Case, baseline: Baseline, tmp_path: Path, cli) -> None:
    if not runnable(case):
        pytest.skip("running as root, whom file permissions do not bind, without unshare --user")
    root = broken(case, baseline, tmp_path)
    before = _files(root)  # the damage is done: the failing command must change nothing more
    result = invoke(case, root, cli)

    assert result.code != INTERNAL_ERROR, f"bad state ended in an internal error: {result}"
    assert result.code == 2, result
    for text in case.says:
        assert text in result.stderr, result
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) <= 2, result
    assert result.stdout.strip() == "", result
    assert "Traceback" not in result.stdout + result.stderr
    assert _files(root) == before

    if case.repair:
        case.repair(root)
        assert _state(cli, root) == baseline.state


def test_a_damaged_state_is_started_over_as_its_message_says(
    baseline: Baseline, tmp_path: Path, cli
) -> None:
    """The advice works: the damaged file moved aside, `cxrun publish` starts a new state with
    the spinners and tables of the project files (and no jobs), and the damaged file is kept."""
    root = _copy(baseline, tmp_path)
    cut(lambda size: size // 2)(root)
    damaged = (root / STATE).read_bytes()
    failed = cli(root, "jobs", "--json")
    assert failed.code == 2 and all(text in failed.stderr for text in START_OVER), failed

    (root / STATE).rename(root / ".cxrun" / "state.damaged")
    published = cli(root, "publish")
    assert published.code == 0, published
    spinners = json.loads(cli(root, "spinners", "--json").stdout)
    assert [(s["spinner"], s["version"]) for s in spinners] == [("welcome", 1)]
    assert json.loads(cli(root, "jobs", "--json").stdout) == []
    assert cli(root, "run-now", "welcome").code == 3  # as the baseline's first run
    assert (root / ".cxrun" / "state.damaged").read_bytes() == damaged


def test_a_whole_state_with_free_blocks_past_its_end_is_not_called_damaged(
    baseline: Baseline, tmp_path: Path, cli
) -> None:
    """DuckDB cuts the file after its last used block but still counts the free blocks beyond:
    only the blocks in use must fit in the file."""
    root = _copy(baseline, tmp_path)
    sql("CREATE TABLE scratch AS SELECT range AS n FROM range(100000)")(root)
    sql("DROP TABLE scratch")(root)  # its blocks, the last of the file, are free now
    con = duckdb.connect(str(root / STATE), read_only=True)
    size, total, used = con.execute(
        "SELECT block_size, total_blocks, used_blocks FROM pragma_database_size()"
    ).fetchone()
    con.close()
    assert (root / STATE).stat().st_size < size * total and used < total  # as the case needs

    assert _state(cli, root) == baseline.state
