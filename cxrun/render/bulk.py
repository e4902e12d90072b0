"""What a bulk action says: the jobs and records it will touch, its question, each job's
outcome, and who runs what it queued."""

from __future__ import annotations

from cxrun.base.bulk import Outcome, Plan, Result
from cxrun.render import out, style

SHOWN_JOBS = 20  # job numbers listed in a plan's line; the rest are counted
_QUESTIONS = {
    "retry": "Retry the failed records of {these}?",
    "cancel": "Cancel {these}? Unfinished records are cancelled; this cannot be undone.",
    "resume": "Resume {these}? A runtime continues the unfinished records.",
}
NO_RUNTIME = (
    "no runtime is up: start `cxrun runtime` (or `cxrun runtime --once`) to run the queued jobs"
)


def summary(plan: Plan) -> str:
    """`retry: 3 jobs (12, 15, 19), 41 failed records`, and what else matched."""
    numbers = [str(job) for job in plan.jobs[:SHOWN_JOBS]]
    more = len(plan.jobs) - len(numbers)
    listed = ", ".join(numbers) + (f" and {more} more" if more else "")
    line = f"{plan.action.name}: {_jobs(len(plan.jobs))} ({listed}), {plan.records} "
    line += plan.action.records
    left = plan.matched - len(plan.jobs)
    if left:
        line += f"; {left} more matching job(s) left out: {_takes(plan)}"
    return line


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def _takes(plan: Plan) -> str:
    return f"{plan.action.name} takes only a job that {plan.action.applies}"


def nothing(plan: Plan) -> str:
    """What a plan with no job says: `no partial jobs of spinner x since ...`."""
    line = f"no {plan.filters.describe()}"
    if plan.matched:
        line += f" to {plan.action.name}: {plan.matched} match, but {_takes(plan)}"
    return line


def question(plan: Plan) -> str:
    count = len(plan.jobs)
    these = "this job" if count == 1 else f"these {count} jobs"
    return _QUESTIONS[plan.action.name].format(these=these)


def say(line: str) -> None:
    """A line on stdout, never cut into several (a terminal wraps it; a script reads it whole)."""
    style.console().print(line, markup=False, soft_wrap=True)


def plan(shown: Plan) -> None:
    say(summary(shown))


def outcome(done: Outcome) -> None:
    """A line per job, then how many went through and which were refused."""
    for result in done.results:
        say(_line(done, result))
    name, total = done.plan.action.name, len(done.results)
    went = total - len(done.refused)
    line = f"{name}: {went} of {_jobs(total)} {_done(done)}"
    if done.refused:
        line += f"; refused: {', '.join(str(job) for job in done.refused)}"
    say(line)
    if done.queued and not done.runtime_up:
        out.note(NO_RUNTIME)


def _done(done: Outcome) -> str:
    return "done" if done.plan.action.name == "cancel" else "queued"


def _line(done: Outcome, result: Result) -> str:
    if not result.ok:
        hint = f"\n  {result.hint}" if result.hint else ""
        return f"job {result.job}: refused: {result.error}{hint}"
    if done.plan.action.name == "cancel" and result.status != "cancelled":
        return f"job {result.job}: {result.status}: its owner was asked to cancel it"
    return f"job {result.job}: {result.status}"
