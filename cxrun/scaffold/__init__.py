"""The files `cxrun init` copies into a new project: cxrun.yaml, one spinner and one table."""
