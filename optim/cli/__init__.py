"""The ``optim`` command line: a thin click layer over the Python API (see ``optim.cli.main``)."""

from optim.cli.main import main

__all__ = ["main"]
