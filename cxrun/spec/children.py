"""Child spinners: finding the ones a spinner's call steps run, and the digest that covers them."""

from __future__ import annotations

import hashlib
from typing import Any

from cxrun.base.errors import CxrunError, NotFound
from cxrun.base.project import Project
from cxrun.base.yamlfile import parse_yaml
from cxrun.spec.build import CALLS
from cxrun.spec.loader import SpinnerFile, schema_problems, spinner_file, spinner_files

MAX_CALL_DEPTH = 4


def attach_children(project: Project, raw: dict[str, Any], name: str) -> list[str]:
    """Find the child spinners the call steps run (from their files, recursively) and keep them
    in `raw[CALLS]`; the problems (unknown, not a child, invalid, a cycle) as path: message."""
    children: dict[str, dict[str, Any]] = {}
    problems: list[str] = []

    def visit(steps: list[dict[str, Any]], where: str, chain: tuple[str, ...]) -> None:
        for index, step in enumerate(steps):
            target = step.get("call")
            if target is None:
                continue
            at = f"{where}steps[{index}].call"
            if target in chain:
                problems.append(f"{at}: '{target}' calls itself ({' > '.join((*chain, target))})")
                continue
            if len(chain) > MAX_CALL_DEPTH:
                problems.append(f"{at}: calls nest deeper than {MAX_CALL_DEPTH} levels")
                continue
            if target not in children:
                child = _child(project, target, at, problems)
                if child is None:
                    continue
                children[target] = child
            visit(children[target]["steps"], f"{at} > {target}.", (*chain, target))

    visit(raw["steps"], "", (name,))
    if not problems:
        raw[CALLS] = children
    return problems


def _child(project: Project, target: str, at: str, problems: list[str]) -> dict[str, Any] | None:
    try:
        file = spinner_file(project, target)
    except NotFound:
        known = ", ".join(f.name for f in spinner_files(project)) or "none"
        problems.append(f"{at}: unknown spinner '{target}' (spinners: {known})")
        return None
    try:
        child = parse_yaml(file.source, file.shown)
    except CxrunError:
        child = None
    if not isinstance(child, dict) or schema_problems(child, target):
        problems.append(f"{at}: spinner '{target}' is not valid (see `cxrun validate {target}`)")
        return None
    if not child.get("child"):
        problems.append(
            f"{at}: spinner '{target}' is not a child spinner (add `child: true` to {file.shown})"
        )
        return None
    return child


def calls_digest(project: Project, file: SpinnerFile) -> str:
    """The digest that tells whether a spinner needs publishing again: its file and the files of
    the child spinners it calls (a changed child makes a new version of its callers)."""
    if "call" not in file.source:
        return file.digest
    names: list[str] = []
    pending = [file.source]
    while pending:
        try:
            raw = parse_yaml(pending.pop(), file.shown)
        except CxrunError:
            continue
        steps = raw.get("steps") if isinstance(raw, dict) else None
        for step in steps if isinstance(steps, list) else []:
            target = step.get("call") if isinstance(step, dict) else None
            if isinstance(target, str) and target not in names and target != file.name:
                names.append(target)
                try:
                    pending.append(spinner_file(project, target).source)
                except NotFound:
                    continue
    if not names:
        return file.digest
    digest = hashlib.sha256(file.source.encode())
    for target in sorted(names):
        try:
            digest.update(f"\0{target}\0".encode() + spinner_file(project, target).source.encode())
        except NotFound:
            digest.update(f"\0{target}\0missing".encode())
    return digest.hexdigest()
