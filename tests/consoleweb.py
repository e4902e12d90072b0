"""Driving the console over HTTP as a browser would: sign in with a key (the form's CSRF token
read from the page), then fetch pages with the cookie; every page checked never to show the key.

    with serving(root) as served:
        web = signed_in(served, key)
        text = page(web, "/", secret=key)
"""

from __future__ import annotations

import re

import httpx
from apiserver import Served

TOKEN = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def token(text: str) -> str:
    """The CSRF token of the first form on a page."""
    found = TOKEN.search(text)
    assert found is not None, text[:2000]
    return found.group(1)


def browser(served: Served) -> httpx.Client:
    """A client of the console (no key yet, redirects not followed)."""
    return httpx.Client(base_url=served.origin, timeout=30, follow_redirects=False)


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    """The sign-in form filled in with `key` and posted, as a browser does."""
    form = client.get("/sign-in")
    assert form.status_code == 200, form.text
    return client.post("/sign-in", data={"key": key, "csrf": token(form.text)})


def signed_in(served: Served, key: str) -> httpx.Client:
    client = browser(served)
    done = sign_in(client, key)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/"
    return client


def page(client: httpx.Client, path: str, status: int = 200, secret: str | None = None) -> str:
    """The HTML of a page that must answer `status` (and never contain `secret`)."""
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("text/html"), response.headers
    if secret is not None:
        assert secret not in response.text
    return response.text
