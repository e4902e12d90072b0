"""An open project: its configuration and its state, the handle every operation is given."""

from __future__ import annotations

from dataclasses import dataclass

from cxrun.base.project import Project, load_project
from cxrun.base.secrets import Secrets
from cxrun.store.db import State


@dataclass(frozen=True)
class Context:
    project: Project
    state: State

    @property
    def secrets(self) -> Secrets:
        return Secrets(self.project.state_dir)


def open_context(project_dir: str | None) -> Context:
    project = load_project(project_dir)
    return Context(project, State(project.state_dir))
