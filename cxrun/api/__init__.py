"""The HTTP API (`cxrun serve`): a surface like the command line, over the same operations and
with the same JSON shapes, behind scoped API keys. It may import ops, render (for JSON) and the
base, never what lies beneath the operations; only the command line imports it."""
