"""Entry point for `python -m cxrun`."""

from cxrun.cli import main

main()
