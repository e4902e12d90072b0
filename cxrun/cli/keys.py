"""Commands for the API keys of `cxrun serve`: create one (its key shown once), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cxrun.cli.app import JsonOpt, ProjectOpt, context

if TYPE_CHECKING:
    from cxrun.ops.keys import ApiKey

_COLUMNS = ["name", "scopes", "spinners", "created", "last used", "revoked"]


def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key, e.g. ci or zapier.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="trigger, read or control; repeat it for more than one."),
    ] = None,
    spinner: Annotated[
        list[str] | None,
        typer.Option(
            "--spinner", help="Trigger only this spinner; repeat it for more (default: any)."
        ),
    ] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Create an API key: the key is printed once, here, and stored only hashed."""
    from cxrun.ops import keys
    from cxrun.render import out

    key, plain = keys.create(context(project), name, scope or (), spinner or ())
    if json_:
        out.print_json(_created(key, plain))
    else:
        typer.echo(plain)  # one unbroken line, whatever the terminal's width
    out.note(f"key {key.name} created: it is not shown again, so keep it now")


def _created(key: ApiKey, plain: str) -> dict[str, object]:
    shown = key.to_json()
    return {"name": key.name, "key": plain} | {
        field: shown[field] for field in ("scopes", "spinners", "created_at")
    }


def keys_list(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """API keys: name, scopes, spinners, created, last used, revoked (never the key)."""
    from cxrun.ops import keys
    from cxrun.render import out

    found = keys.listing(context(project))
    if json_:
        return out.print_json([key.to_json() for key in found])
    out.dict_table(
        [_row(key) for key in found],
        _COLUMNS,
        "no API keys: create one with `cxrun keys create NAME --scope read`",
    )


def _row(key: ApiKey) -> dict[str, str]:
    return {
        "name": key.name,
        "scopes": ", ".join(sorted(key.scopes)),
        "spinners": ", ".join(key.spinners) or "any",
        "created": _when(key.created_at),
        "last used": _when(key.last_used_at) or "never",
        "revoked": _when(key.revoked_at),
    }


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Revoke an API key: every request with it is refused from now on."""
    from cxrun.ops import keys
    from cxrun.render import out

    key = keys.revoke(context(project), name)
    if json_:
        return out.print_json(key.to_json())
    out.note(f"key {key.name} revoked: every request with it is refused from now on")
