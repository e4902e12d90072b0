"""The command line: parse, call one operation of `cxrun.ops`, render with `cxrun.render`.

It may import ops, render and the base, never what lies beneath the operations; errors leave
through the one exit path in `app`. The commands are registered here, in the order `--help`
lists them."""

from __future__ import annotations

from cxrun.cli import answers, automation, keys, project, runs, serve, views
from cxrun.cli.app import app, keys_app, main, schedule_app, secrets_app, tables_app

__all__ = ["app", "main"]

app.command()(project.init)
tables_app.callback(invoke_without_command=True)(project.tables)
tables_app.command("load")(project.tables_load)
tables_app.command("show")(project.tables_show)
app.command()(project.schema)
app.command()(project.validate)
app.command()(project.publish)
app.command()(project.spinners)
app.command("run-now")(runs.run_now)
app.command()(views.jobs)
app.command("job")(views.job_command)
app.command()(views.live)
app.command()(views.doctor)
app.command()(views.records)
app.command()(views.journey)
app.command()(runs.runtime)
app.command()(serve.serve)
app.command()(runs.resume)
app.command()(runs.retry)
app.command()(answers.approve)
app.command()(answers.reject)
app.command()(answers.approvals)
app.command()(runs.cancel)
app.command()(runs.pause)
app.command()(views.outbox)
schedule_app.command("tick")(automation.schedule_tick)
schedule_app.command("list")(automation.schedule_list)
schedule_app.command("pause")(automation.schedule_pause)
schedule_app.command("resume")(automation.schedule_resume)
schedule_app.command("remove")(automation.schedule_remove)
app.command("trigger")(automation.trigger_event)
app.command()(automation.usage)
secrets_app.command("set")(project.secrets_set)
secrets_app.command("list")(project.secrets_list)
secrets_app.command("rm")(project.secrets_rm)
keys_app.command("create")(keys.keys_create)
keys_app.command("list")(keys.keys_list)
keys_app.command("revoke")(keys.keys_revoke)
