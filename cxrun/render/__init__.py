"""Rendering: rich tables, live views and progress for people, plain JSON for scripts. The only
importer of rich, always lazily (start-up time matters); it may import only the base."""
