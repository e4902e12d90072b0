"""The column an I/O step's output becomes: text, JSON, or a STRUCT typed from a JSON Schema."""

from __future__ import annotations

import json
from typing import Any

from cxrun.base.sql import quote_literal
from cxrun.spec.model import AIStep, HttpStep, Step

_SCALARS = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}


def structure(schema: Any) -> Any:
    """A JSON Schema as a DuckDB json_transform structure (objects → STRUCT, arrays → lists)."""
    if not isinstance(schema, dict):
        return "JSON"
    kind = schema.get("type")
    if kind == "object" and isinstance(schema.get("properties"), dict) and schema["properties"]:
        return {name: structure(sub) for name, sub in schema["properties"].items()}
    if kind == "array" and isinstance(schema.get("items"), dict):
        return [structure(schema["items"])]
    if isinstance(kind, str) and kind in _SCALARS:
        return _SCALARS[kind]
    return "JSON"


def output_expression(step: Step, raw: str) -> str:
    """SQL turning the raw answer `raw` (VARCHAR) into the step's typed output column."""
    if isinstance(step, AIStep) and step.schema is not None:
        shape = structure(step.schema)
        if shape == "JSON":
            return f"CAST({raw} AS JSON)"
        return f"json_transform(CAST({raw} AS JSON), {quote_literal(json.dumps(shape))})"
    if isinstance(step, HttpStep):
        return f"CAST({raw} AS JSON)"
    return f"CAST({raw} AS VARCHAR)"
