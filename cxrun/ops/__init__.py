"""The operations every surface calls (the command line now; the API and the console next), split
by subject: publishing, runs, control, bulk actions, answers, views, watch, doctor, automation,
API keys. Each takes the open project, a `Context`, and returns models; none renders. Ops may
import triggers, runtime, io, spec, store and the base, never a surface."""

from __future__ import annotations

from cxrun.store.context import Context, open_context

__all__ = ["Context", "open_context"]
