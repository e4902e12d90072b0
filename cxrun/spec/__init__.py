"""Spinner specs: YAML → JSON Schema → semantic checks → frozen dataclasses, and the windows in
which a spinner may send. It may import the store (a table's columns, to check expressions
against) and the base, nothing above."""
