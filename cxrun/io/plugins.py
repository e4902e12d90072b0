"""The providers and channels a spinner uses, built from cxrun.yaml with their secrets."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cxrun.base.durations import per_second, seconds
from cxrun.base.project import Project
from cxrun.io.calls import Target
from cxrun.io.limits import shared_limit
from cxrun.spec.model import AIStep, SendStep, Spinner

if TYPE_CHECKING:
    import httpx

    from cxrun.base.secrets import Secrets

COMMON = ("kind", "rate", "timeout", "prices", "concurrency")
TRANSPORT_ENV = "CXRUN_HTTP_TRANSPORT"


@dataclass
class Plugins:
    targets: dict[str, Target]
    redact: Callable[[str], str] = lambda text: text
    outbox: set[str] = field(default_factory=set)
    transport: str = "default"
    # cxrun.yaml's options by name (section, options), secrets unresolved: what a cluster's
    # workers are sent to build the targets themselves
    options: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def client(self, concurrency: int) -> httpx.AsyncClient:
        return http_client(concurrency, self.transport)


def used(spinner: Spinner) -> tuple[set[str], set[str]]:
    """The provider names and channel names the spinner's steps use."""
    providers = {s.provider for s in spinner.steps if isinstance(s, AIStep)}
    channels = {s.channel for s in spinner.steps if isinstance(s, SendStep)}
    return providers, channels


def _registry(section: str) -> Mapping[str, Any]:
    if section == "providers":
        from cxrun.io.providers import PROVIDERS

        return PROVIDERS
    from cxrun.io.channels import CHANNELS

    return CHANNELS


def config_problems(project: Project, spinner: Spinner, secrets: Secrets) -> list[str]:
    """Problems with the cxrun.yaml entries the spinner uses: kind, options, secrets.

    Every entry is checked, used or not, until one cxrun.yaml passes whole: then the project
    remembers it (Project.config_checked) and only secrets are looked up again.
    """
    found = {} if project.config_checked else entry_problems(project)
    if not project.config_checked and not any(found.values()):
        project.mark_config_checked()
    providers, channels = used(spinner)
    problems = []
    for section, names in (("providers", providers), ("channels", channels)):
        configured = project.providers if section == "providers" else project.channels
        for name in sorted(names & set(configured)):
            where = f"cxrun.yaml: {section}.{name}"
            problems += found.get(where, [])
            problems += [
                f"{where}: secret {missing} is not set (run `cxrun secrets set {missing}` "
                f"or set the environment variable {missing})"
                for missing in sorted(secrets.missing(configured[name]))
            ]
    return problems


def entry_problems(project: Project) -> dict[str, list[str]]:
    """Each provider's and channel's problems (kind, options, rate, timeout, prices), by where
    they are in cxrun.yaml."""
    import jsonschema

    found: dict[str, list[str]] = {}
    for section, entries in (("providers", project.providers), ("channels", project.channels)):
        kinds = _registry(section)
        for name, options in entries.items():
            where = f"cxrun.yaml: {section}.{name}"
            kind = str(options.get("kind"))
            if kind not in kinds:
                found[where] = [f"{where}.kind: {kind!r} is not one of {', '.join(sorted(kinds))}"]
                continue
            schema = jsonschema.Draft202012Validator(kinds[kind].OPTIONS)
            found[where] = [
                f"{where}{'.' + path if path else ''}: {error.message}"
                for error in schema.iter_errors(options)
                for path in [".".join(str(p) for p in error.absolute_path)]
            ] + _common_problems(where, options)
    return found


def _common_problems(where: str, options: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, parse in (("rate", per_second), ("timeout", seconds)):
        if key in options:
            try:
                parse(options[key])
            except ValueError as exc:
                problems.append(f"{where}.{key}: {exc}")
    prices = options.get("prices", {})
    if not isinstance(prices, dict) or not all(
        isinstance(p, dict) and all(isinstance(v, int | float) for v in p.values())
        for p in prices.values()
    ):
        problems.append(
            f"{where}.prices: write prices per model as {{MODEL: {{prompt: USD, completion: "
            "USD}}} per million tokens"
        )
    return problems


def build(project: Project, spinner: Spinner, secrets: Secrets) -> Plugins:
    """Instances of the providers and channels the spinner uses (their config already checked)."""
    return build_named(project, *used(spinner), secrets)


def build_named(
    project: Project, providers: set[str], channels: set[str], secrets: Secrets
) -> Plugins:
    """Instances of these providers and channels of cxrun.yaml (their config already checked)."""
    targets: dict[str, Target] = {}
    outbox: set[str] = set()
    for section, names in (("providers", providers), ("channels", channels)):
        configured = project.providers if section == "providers" else project.channels
        for name in sorted(names):
            options = dict(configured[name])
            if options["kind"] == "outbox":
                outbox.add(name)
            key = (str(project.root), section, name)
            targets[name] = target(key, section, name, options, secrets)
    redactor = secrets.redactor()
    return Plugins(targets, redactor.redact, outbox, os.environ.get(TRANSPORT_ENV, "default"))


def target(
    key: Hashable, section: str, name: str, options: dict[str, Any], secrets: Secrets
) -> Target:
    """One provider or channel, ready to call: its secrets resolved (MissingSecret when one is
    not set), its limits those every job of this process shares under `key`."""
    secrets.resolve(options)  # so that the redactor knows every value in use
    plugin = _registry(section)[options["kind"]](name, options, secrets.resolve)
    return Target(
        name=name,
        plugin=plugin,
        limit=shared_limit(key, options),
        timeout=seconds(options["timeout"]) if "timeout" in options else None,
        prices=options.get("prices") or {},
    )


def names_only(project: Project, spinner: Spinner, secrets: Secrets) -> Plugins:
    """What a runtime whose calls a cluster makes needs of the plugins: which channels are
    outboxes, and a redactor of the secrets it has (the workers resolve their own)."""
    providers, channels = used(spinner)
    outbox = {name for name in channels if project.channels[name].get("kind") == "outbox"}
    options = {name: ("providers", dict(project.providers[name])) for name in providers}
    options |= {name: ("channels", dict(project.channels[name])) for name in channels}
    return Plugins({}, secrets.redactor().redact, outbox, options=options)


_warm: dict[str, Any] = {}
_warming: list[threading.Thread] = []


def prewarm() -> None:
    """Import the HTTP client and load the CA bundle on a thread while a run is prepared
    (time that would otherwise delay the first call)."""
    if not _warming:
        thread = threading.Thread(target=_prepare, name="cxrun-http-prewarm", daemon=True)
        _warming.append(thread)
        thread.start()


def _prepare() -> None:
    import httpx

    _warm["ssl"] = httpx.create_ssl_context()
    import cxrun.io.wire  # noqa: F401 - imported now, used by http_client


def http_client(concurrency: int, transport: str = "default") -> httpx.AsyncClient:
    """The shared HTTP client of a run: httpx over the transport measured fastest (see README),
    or over httpx's own connection pool with CXRUN_HTTP_TRANSPORT=httpx or when the
    environment names a proxy."""
    import httpx

    from cxrun.io.http import Client
    from cxrun.io.wire import LeanTransport

    for thread in _warming:
        thread.join()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    unbounded = httpx.Timeout(None)  # each attempt is bounded by the executor's watchdog
    # loaded once (or by prewarm), for the transport and any proxy mounts
    verify = _warm.pop("ssl", None) or httpx.create_ssl_context()
    if transport == "httpx" or _proxies_set():  # httpx honours HTTP(S)_PROXY and NO_PROXY
        return Client(verify=verify, limits=limits, timeout=unbounded)
    lean = LeanTransport(verify, limits)
    return Client(transport=lean, verify=verify, limits=limits, timeout=unbounded)


def _proxies_set() -> bool:
    """Whether the environment names an HTTP proxy (cxrun's own transport goes direct)."""
    import urllib.request

    return any(scheme != "no" for scheme in urllib.request.getproxies_environment())
