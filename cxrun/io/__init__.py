"""I/O steps: AI providers, channels and plain HTTP calls, behind one small interface each, and
the executor that runs them concurrently. The only package that speaks HTTP; it may import spec
and the base, never the store (results go back through the runtime)."""

import sys

# httpx's package imports its own command-line client (click, pygments, rich's syntax) at once,
# some 20 ms of every start; cxrun never runs it. A None in sys.modules makes that import fail,
# and httpx then puts a stub in its place (unless something imported it first).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
