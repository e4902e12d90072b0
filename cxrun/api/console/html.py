"""Writing HTML: every value escaped on the way in, the page layout, and the small pieces
(status badges, times, durations, JSON values) that every page shows."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

NAV = (
    ("/", "Jobs"),
    ("/live", "Live Ops"),
    ("/approvals", "Approvals"),
    ("/schedules", "Schedules"),
)


class Safe(str):
    """Text that is HTML already (built by this module from escaped parts)."""


def esc(value: object) -> Safe:
    """`value` as HTML text: a Safe value as it is, anything else escaped (None is empty)."""
    if isinstance(value, Safe):
        return value
    return Safe("" if value is None else html.escape(str(value), quote=True))


def join(parts: Any) -> Safe:
    """Safe pieces (or values to escape) one after the other."""
    return Safe("".join(esc(part) for part in parts))


def tag(name: str, body: object = "", /, **attrs: object) -> Safe:
    """`<name attrs>body</name>`; attribute names take `_` for `-` and drop a trailing `_`."""
    shown = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{esc(value)}"'
        for key, value in attrs.items()
        if value is not None and value is not False
    )
    return Safe(f"<{name}{shown}>{esc(body)}</{name}>")


def link(path: str, query: dict[str, object]) -> str:
    """`path?query`, leaving out empty values."""
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(kept) if kept else "")


def badge(status: object) -> Safe:
    """A status as a coloured label."""
    return tag("span", status, class_=f"badge s-{status}")


def when(moment: datetime | None) -> str:
    """A moment as `2026-12-02 17:50:03 UTC`, or an em dash."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def duration(seconds: float | None) -> str:
    """`4.2 s`, `3 min 5 s`, `2 h 10 min`, or an em dash."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def value(data: object) -> Safe:
    """A JSON value (outputs, an output) as preformatted text, or an em dash."""
    if data is None or data == {} or data == []:
        return Safe("—")
    from cxrun.render.out import json_text

    text = data if isinstance(data, str) else json_text(data)
    return tag("pre", text, class_="value")


def page(title: str, body: object, who: str | None = None, csrf: str | None = None) -> Safe:
    """A whole page: the header with the navigation and who is signed in, then `body`."""
    return Safe(
        "<!doctype html>"
        + tag(
            "html",
            join([_head(title), tag("body", join([_header(who, csrf), tag("main", body)]))]),
            lang="en",
        )
    )


def _head(title: str) -> Safe:
    return tag(
        "head",
        join(
            [
                Safe('<meta charset="utf-8">'),
                Safe('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                tag("title", f"{title} · cxrun"),
                Safe('<link rel="stylesheet" href="/static/console.css">'),
                Safe('<script src="/static/console.js" defer></script>'),
            ]
        ),
    )


def _header(who: str | None, csrf: str | None) -> Safe:
    items = [tag("a", label, href=path) for path, label in NAV] if who else []
    nav = tag("nav", join(items))
    return tag("header", join([tag("strong", "cxrun", class_="brand"), nav, _who(who, csrf)]))


def _who(who: str | None, csrf: str | None) -> Safe:
    if not who or not csrf:
        return Safe("")
    form = tag(
        "form",
        join([hidden("csrf", csrf), tag("button", "Sign out", type="submit", class_="link")]),
        method="post",
        action="/sign-out",
        class_="who",
    )
    return join([tag("span", f"key: {who}", class_="key-name"), form])


def hidden(name: str, data: object) -> Safe:
    """A hidden form field."""
    return Safe(f'<input type="hidden" name="{esc(name)}" value="{esc(data)}">')


def notice(text: object, kind: str = "info") -> Safe:
    """A line that tells the operator something (`kind`: info or warn)."""
    return tag("p", text, class_=f"notice {kind}", role="status")
