"""The house rules of the package layout: the layers hold (and a back-import breaks them),
modules stay under 400 lines, functions stay small."""

from __future__ import annotations

import ast
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cxrun"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("house")
    shutil.copytree(PACKAGE, root / "cxrun", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_layers_hold(copy: Path) -> None:
    done = lint_imports(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout


@pytest.mark.parametrize(
    ("module", "back_import", "broken"),
    [
        (
            "store/db.py",
            "from cxrun.ops import views",
            "cxrun.store is not allowed to import cxrun.ops",
        ),
        (
            "base/clock.py",
            "from cxrun import store",
            "cxrun.base is not allowed to import cxrun.store",
        ),
        ("runtime/spool.py", "from cxrun.triggers import starts", "cxrun.runtime is not allowed"),
        (
            "cli/views.py",
            "from cxrun.store import jobs",
            "cxrun.cli is not allowed to import cxrun.store",
        ),
        ("ops/views.py", "import rich", "cxrun.ops is not allowed to import rich"),
        (
            "io/http.py",
            "from cxrun.store import db",
            "cxrun.io is not allowed to import cxrun.store",
        ),
    ],
)
def test_an_arrow_that_runs_back_up_breaks_a_contract(
    copy: Path, module: str, back_import: str, broken: str
) -> None:
    target = copy / "cxrun" / module
    before = target.read_text()
    try:
        target.write_text(before + f"\n{back_import}  # noqa\n")
        done = lint_imports(copy)
    finally:
        target.write_text(before)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def test_functions_stay_small() -> None:
    sizes = [
        node.end_lineno - node.lineno + 1
        for path in modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno
    ]
    assert statistics.median(sizes) <= 10
    assert statistics.quantiles(sizes, n=10)[-1] <= 35


def test_each_module_says_what_it_owns() -> None:
    silent = [
        str(p.relative_to(ROOT))
        for p in modules()
        if p.name != "__main__.py" and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert silent == []
