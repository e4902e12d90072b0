"""Spinner specs: YAML → JSON Schema → semantic checks → frozen dataclasses."""
