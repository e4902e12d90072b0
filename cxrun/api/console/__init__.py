"""The operator console served by `cxrun serve` at `/`: the Jobs page, Live Ops, approvals and
job controls as server-rendered pages over the same operations as the CLI and the API, signed
in with an API key kept in an HttpOnly cookie, every form carrying a CSRF token. Its CSS and
JS ship in `static/`. Like the API it may import ops, render (for JSON), the base and the API's
own modules, never what lies beneath the operations."""
