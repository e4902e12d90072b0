"""Views of the system's health: doctor's checks, the live overview, the month's usage."""

from __future__ import annotations

from typing import Any

from cxrun.render import out, style


def live(data: dict[str, Any]) -> None:
    """`cxrun live`: jobs by status, the runtime, stalled jobs, recent failures per step."""
    console = style.console()
    jobs = ", ".join(f"{n} {style.status(status)}" for status, n in data["jobs"].items() if n)
    console.print(f"jobs: {jobs or 'none'}")
    runtime = data["runtime"]
    if runtime["up"]:
        ids = ", ".join(r["id"] for r in runtime["runtimes"])
        console.print(f"runtime: [green]up[/] ({style.escape(ids)})")
    else:
        last = runtime["last_heartbeat_at"] or "never"
        console.print(f"runtime: [red]down[/] (last heartbeat: {last})")
    for warning in data["warnings"]:
        console.print(f"[yellow]attention[/]: {style.escape(warning)}")
    if data["stalled"]:
        console.print(f"stalled (no progress for {data['stall_minutes']:g} min):")
        out.dict_table(data["stalled"], ["job", "spinner", "last_progress_at", "idle_s"], "")
    if data["failures"]:
        console.print(f"failures since {data['failures_since']}:")
        out.dict_table(
            data["failures"], ["spinner", "step", "failures", "records", "last_error"], ""
        )
    else:
        console.print("no failures in the last hour")


def doctor(data: dict[str, Any]) -> None:
    """`cxrun doctor`: one line per check, with what to do about a failed one."""
    console = style.console()
    for check in data["checks"]:
        mark = "[green]ok[/]  " if check["ok"] else "[red]FAIL[/]"
        who = f"{check['spinner']}: " if check.get("spinner") else ""
        console.print(
            f"{mark} {style.escape(who + check['check'])}: {style.escape(check['detail'])}"
        )
        if not check["ok"] and check.get("fix"):
            console.print(f"      fix: {style.escape(check['fix'])}")


def usage(data: dict[str, Any]) -> None:
    """`cxrun usage`: this month's jobs and records against the plan limits."""
    rows = [
        {"counts": name, "used": data[name]["used"], "limit": data[name]["limit"] or "none"}
        for name in ("jobs", "records")
    ]
    out.dict_table(rows, ["counts", "used", "limit"], "")
    style.console().print(f"month {data['month']} (UTC); the counts reset on {data['resets_on']}")
