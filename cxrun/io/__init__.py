"""I/O steps: AI providers, channels and plain HTTP calls, behind one small interface each, and
the executor that runs them concurrently. The only package that speaks HTTP; it may import spec
and the base, never the store (results go back through the runtime)."""
