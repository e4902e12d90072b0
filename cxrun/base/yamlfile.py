"""Reading YAML files safely, with errors that name the file, line and column.

A file is read only up to MAX_FILE_BYTES, and its aliases (`*name`, which repeat the whole value
of an anchor `&name`) may add at most MAX_ALIAS_NODES values: a "billion laughs" of nested
aliases is a few hundred bytes that would expand to more values than memory holds.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from cxrun.base.errors import CxrunError

MAX_FILE_BYTES = 1024 * 1024
MAX_ALIAS_NODES = 10_000


class _TooManyAliases(Exception):
    """The composed document repeats too much through aliases, or contains itself."""


def parse_yaml(text: str, shown_as: str) -> Any:
    """Parse YAML text with a safe loader; a syntax error names the file, line and column."""
    import yaml

    if len(text) > MAX_FILE_BYTES:
        raise _too_big(shown_as)
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a safe loader
    except _TooManyAliases as exc:
        raise CxrunError(
            f"{shown_as}: {exc}", "write the values out, or use fewer aliases (*name)"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise CxrunError(
            f"{shown_as}: {where}{exc.problem or exc}",
            "fix the YAML syntax and try again",
        ) from None
    except yaml.YAMLError as exc:
        raise CxrunError(f"{shown_as}: {exc}", "fix the YAML syntax and try again") from None


@cache
def _loader() -> type:
    """The safe loader (libyaml's when there is one) that checks what aliases add up to."""
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        def get_single_node(self) -> Any:
            node = super().get_single_node()
            if node is not None:
                _check_aliases(node)
            return node

    # YAML 1.2's booleans: only true and false. YAML 1.1 also reads on, off, yes and no as
    # booleans, which would turn `notify: [{on: [failed]}]` into {True: [failed]}.
    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


_BOOL = "tag:yaml.org,2002:bool"


def _check_aliases(root: Any) -> None:
    """Refuse a document whose aliases add more than MAX_ALIAS_NODES values, or whose alias
    sits inside the value it names. An alias is the anchored node itself, so a node met again
    is an alias: each node's expanded size (itself and everything under it, aliases repeated)
    is counted once, from its children's."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes above the one being looked at
    pending: list[tuple[Any, bool]] = [(root, False)]
    while pending:
        node, finished = pending.pop()
        children = _children(node)
        if finished:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
        elif id(node) in open_nodes:
            mark = node.start_mark
            raise _TooManyAliases(
                f"line {mark.line + 1}, column {mark.column + 1}: an alias (*name) sits inside "
                "the value it names, which would contain itself for ever"
            )
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            pending.append((node, True))
            pending += [(child, False) for child in children if id(child) not in sizes]
    added = sizes[id(root)] - len(sizes)
    if added > MAX_ALIAS_NODES:
        raise _TooManyAliases(
            f"YAML aliases (*name) repeat {added} values, more than the {MAX_ALIAS_NODES} allowed"
        )


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def read_yaml(path: Path, shown_as: str) -> Any:
    return parse_yaml(read_text(path, shown_as), shown_as)


def read_text(path: Path, shown_as: str) -> str:
    """The file's text; one over MAX_FILE_BYTES is refused without reading it all."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise _too_big(shown_as)
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as open() does
    except FileNotFoundError:
        raise CxrunError(f"{shown_as}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CxrunError(f"{shown_as}: cannot read ({exc})") from None


def _too_big(shown_as: str) -> CxrunError:
    return CxrunError(
        f"{shown_as}: the file is larger than 1 MiB ({MAX_FILE_BYTES} bytes), the most cxrun reads",
        "make it smaller (rows of data belong in tables/)",
    )
